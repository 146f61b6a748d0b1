import type { AuditSink } from '../audit/recorder.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { IssuedToken } from '../store/records.js';
import type { TokenIndex } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import type { RevocationService } from './revocation-service.js';

/** What a reload took away: plugins (removed or disabled), grants, and scopes of grants that remain. */
export interface PolicyRemovals {
  readonly plugins: readonly string[];
  /** A grant is its (audience, kind): a kind change removes the old one. */
  readonly grants: readonly { readonly plugin: string; readonly audience: string; readonly kind: string }[];
  readonly scopes: readonly { readonly plugin: string; readonly audience: string; readonly kind: string; readonly scopes: readonly string[] }[];
}

/** How many jtis the audit event lists (the per-token `token.revoked` events name every one). */
const LISTED_JTIS = 100;
const ACTOR = 'system:reload';

type Granted = Map<string, Set<string>>;

/** plugin's grants as `audience kind` -> scopes (several grants of one audience and kind are unioned). */
function grantsOf(policy: CompiledPolicy, plugin: string): Granted | undefined {
  const p = policy.plugins.get(plugin);
  if (!p || p.disabled) return undefined;
  const out: Granted = new Map();
  for (const g of p.grants) {
    const key = `${g.audience}\u0000${g.kind}`;
    const set = out.get(key) ?? new Set<string>();
    for (const s of g.scopes) set.add(s);
    out.set(key, set);
  }
  return out;
}

/**
 * What `next` no longer grants that `prev` did. Pure; cost in the size of the two policies,
 * never in what was issued.
 */
export function policyRemovals(prev: CompiledPolicy, next: CompiledPolicy): PolicyRemovals {
  const plugins: string[] = [];
  const grants: { plugin: string; audience: string; kind: string }[] = [];
  const scopes: { plugin: string; audience: string; kind: string; scopes: string[] }[] = [];
  for (const id of [...prev.plugins.keys()].sort()) {
    const before = grantsOf(prev, id);
    if (!before) continue;
    const after = grantsOf(next, id);
    if (!after) {
      plugins.push(id);
      continue;
    }
    for (const [key, had] of [...before].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const [audience, kind] = key.split('\u0000') as [string, string];
      const has = after.get(key);
      if (!has) grants.push({ plugin: id, audience, kind });
      else {
        const lost = [...had].filter((s) => !has.has(s)).sort();
        if (lost.length > 0) scopes.push({ plugin: id, audience, kind, scopes: lost });
      }
    }
  }
  return { plugins, grants, scopes };
}

export function isEmpty(r: PolicyRemovals): boolean {
  return r.plugins.length === 0 && r.grants.length === 0 && r.scopes.length === 0;
}

/** A live token the removals take away: its grant is gone, or it holds a scope no longer granted. */
function affected(token: IssuedToken, r: PolicyRemovals): boolean {
  if (r.grants.some((g) => g.plugin === token.plugin && g.audience === token.audience && g.kind === token.kind)) return true;
  return r.scopes.some((s) => s.plugin === token.plugin && s.audience === token.audience && s.kind === token.kind && token.scopes.some((x) => s.scopes.includes(x)));
}

export interface ReloadRevocationDeps {
  readonly revocation: RevocationService;
  readonly tokens: Pick<TokenIndex, 'listLiveIssuedForPlugin'>;
  readonly clock: Clock;
  readonly audit: AuditSink;
}

export interface ReloadRevocationOutcome {
  readonly removals: PolicyRemovals;
  /** Plugin-scope revocations made (removed or disabled plugins). */
  readonly plugins: number;
  /** Tokens revoked by jti (removed grants, narrowed scopes). */
  readonly tokens: number;
}

/**
 * After a reload is in force: revoke what the new policy no longer allows. A removed (or
 * disabled) plugin gets one plugin-scope revocation; a removed grant or a narrowed scope
 * revokes the live tokens that depended on it, by jti. Each revocation runs the kind's
 * Revoker (Vault leases, AWS session denies), told the policy the tokens were issued under
 * so it can still find their role. Only live tokens of the plugins that lost something are
 * read (the token index by plugin and expiry), so the cost never grows with history.
 * Tokens another replica already revoked for the same reload are skipped.
 */
export async function revokeOnReload(prev: CompiledPolicy, next: CompiledPolicy, digest: string, deps: ReloadRevocationDeps): Promise<ReloadRevocationOutcome> {
  const removals = policyRemovals(prev, next);
  if (isEmpty(removals)) return { removals, plugins: 0, tokens: 0 };
  const now = deps.clock.now();
  const opts = (what: string) => ({ actor: ACTOR, reason: `policy.revoked_on_reload: ${what}`, issuedUnder: prev });
  for (const plugin of removals.plugins) await deps.revocation.revokePlugin(plugin, opts('plugin removed or disabled'));
  const jtis: string[] = [];
  const touched = [...new Set([...removals.grants, ...removals.scopes].map((g) => g.plugin))];
  for (const plugin of touched) {
    for (const t of await deps.tokens.listLiveIssuedForPlugin(plugin, now)) {
      if (!affected(t, removals) || alreadyRevoked(deps.revocation, t)) continue;
      jtis.push(t.jti);
    }
  }
  if (jtis.length > 0) await deps.revocation.revokeTokens(jtis, opts('grant removed or scopes narrowed'));
  await deps.audit.record('policy.revoked_on_reload', {
    digest,
    actor: ACTOR,
    plugins_removed: removals.plugins,
    grants_removed: removals.grants,
    scopes_narrowed: removals.scopes,
    tokens_revoked: jtis.length,
    jtis: jtis.slice(0, LISTED_JTIS),
    jtis_truncated: jtis.length > LISTED_JTIS ? true : undefined,
  });
  return { removals, plugins: removals.plugins.length, tokens: jtis.length };
}

/** Whether the view already counts `t` revoked (another replica, or an earlier pass, did it). */
export function alreadyRevoked(revocation: Pick<RevocationService, 'isRevoked'>, t: IssuedToken): boolean {
  try {
    return revocation.isRevoked({ jti: t.jti, plugin: t.plugin, task: t.task, kid: t.kid, iat: Math.floor(t.issuedAt / 1000) });
  } catch {
    // A view that cannot prove it is fresh: revoking again is harmless.
    return false;
  }
}
