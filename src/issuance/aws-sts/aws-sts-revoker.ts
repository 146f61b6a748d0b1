import type { CompiledPolicy } from '../../policy/types.js';
import type { IssuedToken } from '../../store/records.js';
import type { RevokeContext, RevokeOptions, Revoker } from '../../revocation/revocation-service.js';
import { systemClock, type Clock } from '../../time/clock.js';
import { cutoffAfter, type DenyEntry } from './deny-policy.js';
import { sourceIdentity, tagValue } from './names.js';
import type { SessionDenier } from './session-denier.js';

/** What the revoker reports when it cannot deny: sessions AWS will keep honouring until they expire. */
export interface UnrevokableSessions {
  readonly count: number;
  /** `aws:<AccessKeyId>` per session, with its expiry (ISO 8601). */
  readonly sessions: readonly { readonly jti: string; readonly expires_at: string }[];
  /** ISO 8601: after this instant none of them is valid. */
  readonly valid_until: string;
  readonly actor: string;
  readonly reason: string;
  /** Why they are not denied: the automatic deny is off, or the grant's role is unknown. */
  readonly why: 'deny_disabled' | 'role_unknown';
}

export interface AwsStsRevokerDeps {
  readonly clock?: Clock;
  /** The policy in force, to find each session's role (its grant's `role_arn`). */
  readonly policy?: () => CompiledPolicy;
  /** undefined (or returning undefined): the automatic deny is off (`settings.aws.deny_revoked_sessions: false`). */
  readonly denier?: () => SessionDenier | undefined;
  /** Slack added to a session's AWS expiration before its deny entry is dropped (clock skew to AWS). */
  readonly skewMs?: () => number;
  readonly log?: (msg: string, fields: UnrevokableSessions) => void;
  readonly metrics?: { readonly awsDenyUpdates: { inc(labels: { outcome: string }): void } };
}

/** The role a session was issued for: its grant's `role_arn`, in the policy it was issued under first. */
export function roleOfSession(token: IssuedToken, policies: readonly (CompiledPolicy | undefined)[]): string | undefined {
  for (const policy of policies) {
    const grant = policy?.plugins.get(token.plugin)?.grants.find((g) => g.audience === token.audience && g.kind === 'aws-sts');
    if (grant?.config.aws) return grant.config.aws.role_arn;
  }
  return undefined;
}

/**
 * The deny entries one revocation needs on one role. Tasks and plugins get one entry each
 * (their tag / source identity); a single session gets its plugin and task (AWS has no key
 * naming one session). Each entry lives until the last session it covers has expired.
 */
export function denyEntriesFor(sessions: readonly IssuedToken[], ctx: RevokeContext | undefined, skewMs: number): DenyEntry[] {
  if (sessions.length === 0) return [];
  const before = cutoffAfter(ctx?.revokedAt ?? Math.max(...sessions.map((s) => s.issuedAt)));
  const until = (list: readonly IssuedToken[]) => Math.max(...list.map((s) => s.expiresAt)) + skewMs;
  if (ctx?.scope === 'task') return [{ kind: 'task', task: tagValue(ctx.id), before, until: until(sessions) }];
  if (ctx?.scope === 'plugin') return [{ kind: 'plugin', plugin: sourceIdentity(ctx.id), before, until: until(sessions) }];
  return sessions.map((s) => ({ kind: 'session', plugin: sourceIdentity(s.plugin), task: tagValue(s.task ?? 'none'), before, until: s.expiresAt + skewMs }));
}

/**
 * AWS cannot revoke one STS session, but it evaluates the role's policies on every request:
 * revoking a task, a plugin or a session adds a Deny on its session tag or source identity
 * to the role's `leash-revoked-sessions` inline policy (see deny-policy.ts and
 * session-denier.ts). What cannot be denied (the automatic deny is off, or the grant's role
 * is no longer known) is reported, never passed over in silence.
 */
export function createAwsStsRevoker(deps: AwsStsRevokerDeps = {}): Revoker {
  const clock = deps.clock ?? systemClock;
  function report(live: readonly IssuedToken[], opts: RevokeOptions, why: UnrevokableSessions['why']): void {
    if (why === 'role_unknown') deps.metrics?.awsDenyUpdates.inc({ outcome: 'unresolved' });
    deps.log?.(
      why === 'deny_disabled'
        ? 'AWS STS sessions are not denied (settings.aws.deny_revoked_sessions is off); they stay valid until their expiration'
        : "AWS STS sessions could not be denied: their grant's role is not in the policy; they stay valid until their expiration",
      {
        count: live.length,
        sessions: live.map((t) => ({ jti: t.jti, expires_at: new Date(t.expiresAt).toISOString() })),
        valid_until: new Date(Math.max(...live.map((t) => t.expiresAt))).toISOString(),
        actor: opts.actor,
        reason: opts.reason,
        why,
      },
    );
  }
  return {
    kind: 'aws-sts',
    async revokeIssued(tokens: readonly IssuedToken[], opts: RevokeOptions, ctx?: RevokeContext): Promise<void> {
      const live = tokens.filter((t) => t.kind === 'aws-sts' && t.expiresAt > clock.now());
      if (live.length === 0) return;
      const denier = deps.denier?.();
      if (!denier) return report(live, opts, 'deny_disabled');
      const policies = [opts.issuedUnder, deps.policy?.()];
      const byRole = new Map<string, IssuedToken[]>();
      const unknown: IssuedToken[] = [];
      for (const t of live) {
        const role = roleOfSession(t, policies);
        if (role === undefined) unknown.push(t);
        else byRole.set(role, [...(byRole.get(role) ?? []), t]);
      }
      if (unknown.length > 0) report(unknown, opts, 'role_unknown');
      const skew = deps.skewMs?.() ?? 30_000;
      for (const [role, sessions] of byRole) await denier.deny(role, denyEntriesFor(sessions, ctx, skew));
    },
  };
}
