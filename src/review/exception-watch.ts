import type { LeashConfig } from '../config/schema.js';
import type { AuditSink } from '../audit/recorder.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { TokenIndex } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { parseDate } from '../config/guardrails.js';
import { alreadyRevoked } from '../revocation/reload-revocations.js';

const DAY_MS = 86_400_000;

export interface ExceptionWatchDeps {
  readonly clock: Clock;
  /** The policy in force now (swapped on reload). */
  readonly current: () => { readonly config: LeashConfig; readonly policy: CompiledPolicy };
  readonly tokens: Pick<TokenIndex, 'listLiveIssuedForPlugin'>;
  readonly revocation: Pick<RevocationService, 'revokeTokens' | 'isRevoked'>;
  readonly audit: AuditSink;
}

/**
 * Revoke the live tokens an expired exception allowed: those of the grants it covered. The
 * same path as a reload that removes a grant (one batch by jti, each kind's revoker run for
 * them, tokens already revoked skipped).
 */
export async function revokeTokensAllowedBy(
  deps: Pick<ExceptionWatchDeps, 'tokens' | 'revocation'>,
  covered: readonly { readonly plugin: string; readonly audience: string }[],
  exceptionId: string,
  now: number,
): Promise<number> {
  const byPlugin = new Map<string, Set<string>>();
  for (const c of covered) byPlugin.set(c.plugin, (byPlugin.get(c.plugin) ?? new Set()).add(c.audience));
  const jtis: string[] = [];
  for (const [plugin, audiences] of byPlugin) {
    for (const t of await deps.tokens.listLiveIssuedForPlugin(plugin, now)) {
      if (audiences.has(t.audience) && !alreadyRevoked(deps.revocation, t)) jtis.push(t.jti);
    }
  }
  if (jtis.length > 0) await deps.revocation.revokeTokens(jtis, { actor: 'system:exception-expiry', reason: `exception ${exceptionId} expired` });
  return jtis.length;
}

/**
 * Watches the exceptions of the policy in force. Their grants are already refused at
 * request time from the expiry on (policy evaluation compares the clock); this pass does
 * the rest once per exception and expiry: revoke the live tokens the exception allowed and
 * emit `exception.expired`, and `exception.expiring` when it enters the warning window.
 * A renewal (a new `expires_at`) re-arms both. State is per process: after a restart an
 * exception already expired is reported (and its tokens swept) once more.
 */
export class ExceptionWatcher {
  readonly #deps: ExceptionWatchDeps;
  readonly #expired = new Set<string>();
  readonly #warned = new Set<string>();

  constructor(deps: ExceptionWatchDeps) {
    this.#deps = deps;
  }

  /** One pass; returns how many events it emitted. */
  async pass(): Promise<number> {
    const now = this.#deps.clock.now();
    const { config, policy } = this.#deps.current();
    const warnMs = config.settings.review.exception_warning_days * DAY_MS;
    let emitted = 0;
    for (const e of config.exceptions ?? []) {
      const expiresAt = parseDate(e.expires_at);
      if (Number.isNaN(expiresAt)) continue;
      const key = `${e.id}@${expiresAt}`;
      if (now >= expiresAt) {
        if (this.#expired.has(key)) continue;
        const covered = [...policy.plugins.values()].flatMap((p) => p.grants.filter((g) => g.exceptions.some((x) => x.id === e.id)).map((g) => ({ plugin: p.id, audience: g.audience })));
        const revoked = await revokeTokensAllowedBy(this.#deps, covered, e.id, now);
        await this.#deps.audit.record('exception.expired', {
          exception: e.id,
          plugin: e.plugin,
          grant: e.grant,
          guardrail: e.guardrail,
          expired_at: new Date(expiresAt).toISOString(),
          grants_refused: covered.map((c) => c.audience),
          revoked,
          ticket: e.ticket,
          owner: e.owner,
        });
        this.#expired.add(key);
        emitted++;
      } else if (warnMs > 0 && now >= expiresAt - warnMs && !this.#warned.has(key)) {
        await this.#deps.audit.record('exception.expiring', {
          exception: e.id,
          plugin: e.plugin,
          grant: e.grant,
          guardrail: e.guardrail,
          expires_at: new Date(expiresAt).toISOString(),
          days_left: Math.ceil((expiresAt - now) / DAY_MS),
          ticket: e.ticket,
          owner: e.owner,
        });
        this.#warned.add(key);
        emitted++;
      }
    }
    return emitted;
  }
}
