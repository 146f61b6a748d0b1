import type { AuditEventType, AuditPayload, UsageCallEvent } from '../audit/events.js';
import type { Settings } from '../config/schema.js';
import type { IssuedToken, Task } from '../store/records.js';
import type { EvidenceMark, TokenUseResult } from '../store/usage-store.js';
import type { ReportingServer, UsageIngestorDeps } from './ingest.js';
import type { UsageCall } from './report.js';

/** What anomaly detection reads about one batch. */
export interface AnomalyContext {
  readonly server: ReportingServer;
  readonly settings: Settings;
  readonly now: number;
  readonly tokens: ReadonlyMap<string, IssuedToken | null>;
  readonly tasks: ReadonlyMap<string, Task>;
  readonly retentionMs: number;
  readonly deps: UsageIngestorDeps;
}

const ACTOR = 'system:usage';

/**
 * Security events from usage, one per fact, never one per call: `token.first_use` and
 * `token.shared` come from the store's atomic answer (first use, a new source), the others
 * are recorded once per token (per server for an audience mismatch) through the replay
 * cache, so replicas ingesting the same token's reports do not repeat them.
 */
export async function detectAnomalies(
  ctx: AnomalyContext,
  calls: readonly UsageCall[],
  results: readonly TokenUseResult[],
  marks: readonly EvidenceMark[],
  previousCalls: readonly number[],
  /** Every call of the batch (uses are one per token and source): drift looks at routes. */
  allCalls: readonly UsageCall[] = calls,
): Promise<void> {
  for (let i = 0; i < calls.length; i++) {
    const call = calls[i]!;
    const issued = ctx.tokens.get(call.jti!)!;
    const result = results[i]!;
    // Built only for an event: most uses are of a known token from a known source, and say nothing.
    let base: UsageCallEvent | undefined;
    if (result.first) await emit(ctx, 'token.first_use', { ...(base ??= eventBase(ctx, issued, call)), after_issue_ms: Math.max(0, call.at - issued.issuedAt) });

    // A bound token presented with another key's proof, or a second source: shared.
    const wrongKey = issued.jkt !== undefined && call.jkt !== undefined && call.jkt !== issued.jkt;
    if (result.newSource || (wrongKey && (await once(ctx, `usage:wrong-key:${issued.jti}:${call.jkt}`, issued)))) {
      await respondShared(
        ctx,
        'token.shared',
        { ...(base ??= eventBase(ctx, issued, call)), sources: Math.max(result.sources, 2), bound_jkt: issued.jkt, cause: wrongKey ? 'dpop_key' : issued.jkt !== undefined ? 'dpop_key' : 'address' },
        issued,
      );
    }

    const revokedAt = ctx.deps.revokedAt.revokedAt(issued);
    const afterRevocation = (revokedAt !== undefined && call.at >= revokedAt) || call.outcome === 'revoked';
    if (afterRevocation && (await once(ctx, `usage:revoked:${issued.jti}`, issued))) {
      await emit(ctx, 'token.used_after_revocation', { ...(base ??= eventBase(ctx, issued, call)), revoked_at: revokedAt, refused: call.outcome !== 'ok' });
    }

    const task = issued.task === undefined ? undefined : ctx.tasks.get(issued.task);
    const outside =
      task === undefined
        ? undefined
        : task.state === 'ended' && task.endedAt !== undefined && call.at >= task.endedAt
          ? 'task_ended'
          : call.at >= task.expiresAt
            ? 'task_expired'
            : call.task !== undefined && call.task !== task.id
              ? 'task_mismatch'
              : undefined;
    if (outside && (await once(ctx, `usage:task:${issued.jti}`, issued))) {
      await emit(ctx, 'token.used_outside_task', {
        ...(base ??= eventBase(ctx, issued, call)),
        cause: outside,
        reported_task: call.task,
        task_ended_at: task?.endedAt,
        task_expires_at: task?.expiresAt,
        refused: call.outcome !== 'ok',
      });
    }

    if ((issued.audience !== call.audience || call.outcome === 'wrong_audience') && (await once(ctx, `usage:audience:${issued.jti}:${ctx.server.id}`, issued))) {
      // A token at a server it was not issued for has left its holder's hands as surely as a shared one.
      await respondShared(ctx, 'token.audience_mismatch', { ...(base ??= eventBase(ctx, issued, call)), server_audience: call.audience, refused: call.outcome !== 'ok' }, issued);
    }
  }
  await detectDrift(ctx, allCalls, marks, previousCalls);
}

/** A route the plugin never used, reached by a token long after issuance, once the plugin has a history at the grant. */
async function detectDrift(ctx: AnomalyContext, calls: readonly UsageCall[], marks: readonly EvidenceMark[], previousCalls: readonly number[]): Promise<void> {
  const { min_token_age: minAge, min_history_calls: minHistory } = ctx.settings.usage.drift;
  const history = new Map<string, number>();
  marks.forEach((m, i) => {
    if (m.kind === 'grant') history.set(`${m.plugin}\u001f${m.audience}`, previousCalls[i]!);
  });
  for (let i = 0; i < marks.length; i++) {
    const m = marks[i]!;
    if (m.kind !== 'route' || previousCalls[i] !== 0) continue;
    const before = history.get(`${m.plugin}\u001f${m.audience}`) ?? 0;
    if (before < minHistory) continue;
    for (const call of calls) {
      const issued = call.jti === undefined ? undefined : ctx.tokens.get(call.jti);
      if (!issued) continue;
      if (issued.plugin !== m.plugin || issued.audience !== m.audience || `${call.method} ${call.route}` !== m.name || call.outcome !== 'ok') continue;
      const age = call.at - issued.issuedAt;
      if (age < minAge * 1000) continue;
      await emit(ctx, 'usage.route_drift', { ...eventBase(ctx, issued, call), token_age_ms: age, history_calls: before });
      break;
    }
  }
}

function eventBase(ctx: AnomalyContext, issued: IssuedToken, call: UsageCall): UsageCallEvent {
  return {
    jti: issued.jti,
    plugin: issued.plugin,
    task: issued.task,
    audience: issued.audience,
    server: ctx.server.id,
    method: call.method,
    route: call.route,
    outcome: call.outcome,
    source: call.source,
    jkt: call.jkt,
    at: call.at,
  };
}

async function emit<T extends AuditEventType>(ctx: AnomalyContext, type: T, event: AuditPayload<T>): Promise<void> {
  ctx.deps.metrics.usageAnomalies.inc({ type });
  await ctx.deps.audit.record(type, event);
}

/** True the first time a fact is seen (across replicas: the store's replay cache). */
async function once(ctx: AnomalyContext, key: string, issued: IssuedToken): Promise<boolean> {
  return ctx.deps.store.remember(key, Math.max(issued.expiresAt, ctx.now) + ctx.retentionMs);
}

/** The event, then the configured response: revoke the token, and suspend the plugin. */
async function respondShared<T extends 'token.shared' | 'token.audience_mismatch'>(ctx: AnomalyContext, type: T, event: Omit<AuditPayload<T>, 'response'>, issued: IssuedToken): Promise<void> {
  const response = ctx.settings.usage.shared_token.response;
  await emit(ctx, type, { ...event, response } as AuditPayload<T>);
  if (response === 'event') return;
  const reason = type === 'token.shared' ? 'shared token: presented from a second source' : 'token presented to a server it was not issued for';
  await ctx.deps.revocation.revokeToken(issued.jti, { actor: ACTOR, reason });
  if (response === 'revoke-and-suspend') {
    const { changed } = await ctx.deps.revocation.suspend(issued.plugin, { actor: ACTOR, reason });
    if (changed) await ctx.deps.audit.record('plugin.suspended', { plugin: issued.plugin, actor: ACTOR, reason });
  }
}
