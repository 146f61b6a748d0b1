import { parseDate } from '../../config/guardrails.js';
import type { Check } from './context.js';

const DAY_MS = 86_400_000;

export const exceptionChecks: Check = (ctx, emit) => {
  const review = ctx.config.settings.review;
  const plugins = new Map((ctx.config.plugins ?? []).map((p) => [p.id, p]));
  (ctx.config.exceptions ?? []).forEach((e, i) => {
    const at = `/exceptions/${i}`;
    const base = { plugin: e.plugin, grant: e.grant, exception: e.id };
    const expires = parseDate(e.expires_at);
    const created = parseDate(e.created_at);
    const target = `'${e.id}' (guardrail ${e.guardrail}, plugin '${e.plugin}'${e.grant ? `, grant ${e.grant}` : ''})`;
    if (expires <= ctx.now) {
      emit({
        ...base,
        rule: 'exception-expired',
        pointer: `${at}/expires_at`,
        key: e.id,
        message: `exception ${target} expired on ${e.expires_at}; the grant it covered is refused since then`,
        fix: `fix the grant to meet '${e.guardrail}' and remove exception '${e.id}', or renew it (new expires_at, a renewals entry)`,
        evidence: { expires_at: e.expires_at, ticket: e.ticket, owner: e.owner },
      });
    } else if (expires - ctx.now <= review.exception_warning_days * DAY_MS) {
      const days = Math.ceil((expires - ctx.now) / DAY_MS);
      emit({
        ...base,
        rule: 'exception-expiring',
        pointer: `${at}/expires_at`,
        key: e.id,
        message: `exception ${target} expires in ${days} day${days === 1 ? '' : 's'} (${e.expires_at}); from then its grant is refused`,
        fix: `fix the grant, or renew '${e.id}' before ${e.expires_at}`,
        evidence: { expires_at: e.expires_at, days_left: days },
      });
    }
    const renewals = (e.renewals ?? []).length;
    const ageDays = Math.floor((ctx.now - created) / DAY_MS);
    if (renewals > review.exception_max_renewals || ageDays > review.exception_max_age_days) {
      emit({
        ...base,
        rule: 'exception-permanent',
        pointer: renewals > review.exception_max_renewals ? `${at}/renewals` : `${at}/created_at`,
        key: e.id,
        message: `exception ${target} was renewed ${renewals} time${renewals === 1 ? '' : 's'} and has run ${ageDays} days since ${e.created_at}: temporary became permanent`,
        fix: `fix the grant, or change guardrail '${e.guardrail}' in the guardrails file if the risk is accepted for good`,
        evidence: { renewals, age_days: ageDays, max_renewals: review.exception_max_renewals, max_age_days: review.exception_max_age_days },
      });
    }
    const missing = [e.ticket === undefined ? 'ticket' : undefined, e.owner === undefined ? 'owner' : undefined].filter((m): m is string => m !== undefined);
    if (missing.length > 0) {
      emit({
        ...base,
        rule: 'exception-unaccountable',
        pointer: at,
        key: e.id,
        message: `exception ${target} has no ${missing.join(' and no ')}`,
        fix: `set ${missing.join(' and ')} on '${e.id}'`,
        evidence: { missing },
      });
    }
    if (plugins.get(e.plugin)?.risk === 'critical') {
      emit({
        ...base,
        rule: 'exception-critical-plugin',
        pointer: `${at}/plugin`,
        key: e.id,
        message: `exception ${target} widens policy for a critical plugin`,
        fix: `fix the grant of '${e.plugin}' instead, or keep '${e.id}' short and reviewed by security`,
      });
    }
  });
};
