import { describe, expect, it } from '@jest/globals';
import { compilePolicy } from '../../src/policy/compile.js';
import { checkDelegationTarget, narrowForChain, verifyUpstream, type Upstream } from '../../src/delegation/delegation.js';
import { actOf, actorsOf, parseActClaim, parseChainEffects } from '../../src/issuance/jwt/act-claim.js';
import { LeashError } from '../../src/errors/leash-error.js';
import type { LeashTokenClaims } from '../../src/issuance/jwt/verify-leash-token.js';
import type { RevocationService, TokenFacts } from '../../src/revocation/revocation-service.js';
import type { CompiledPolicy, Decision } from '../../src/policy/types.js';
import type { Settings } from '../../src/config/schema.js';
import { NOW, config, grant, plugin, settings } from '../policy/fixtures.js';

const CRM = 'https://crm.example.com';
const HR = 'https://hr.example.com';
const MAIL = 'https://mail.example.com';
const nowS = Math.floor(NOW / 1000);

function policy(): CompiledPolicy {
  return compilePolicy(
    config([
      plugin('a', { delegate_to: ['b', 'x'], grants: [grant({ audience: CRM, scopes: ['c:read', 'c:search', 'c:export'], default_scopes: ['c:read'] })] }),
      plugin('b', {
        delegate_to: ['c', 'a', 'mailer'],
        grants: [grant({ audience: CRM, scopes: ['c:read', 'c:search', 'c:delete'], default_scopes: ['c:delete'] }), grant({ audience: MAIL, scopes: ['m:draft'] })],
      }),
      plugin('c', { delegate_to: ['d'], grants: [grant({ audience: CRM, scopes: ['c:read', 'c:search'] })] }),
      plugin('d', { grants: [grant({ audience: CRM, scopes: ['c:read'] })] }),
      plugin('x', { grants: [grant({ audience: 'https://x.example.com', scopes: ['x'] })] }),
      plugin('hr', { delegate_to: ['mailer', 'b'], grants: [grant({ audience: HR, scopes: ['hr:read'], effect: 'read-sensitive' })] }),
      plugin('mailer', { grants: [grant({ audience: MAIL, scopes: ['m:send'], effect: 'exfiltrate', approval: 'none' }), grant({ audience: HR, scopes: ['hr:read'] })] }),
    ]),
  );
}

function claims(over: Partial<LeashTokenClaims> = {}): LeashTokenClaims {
  const c = { iss: 'http://leash', jti: 'jti-up', sub: 'a', plugin: 'a', client_id: 'a', aud: CRM, scope: 'c:read c:search', task: 'task-1', exp: nowS + 120, iat: nowS - 10, kid: 'k1', ...over };
  // A delegated token carries one upstream jti per earlier actor, as Leash writes it.
  return c.act && !('chain_jti' in over) ? { ...c, chain_jti: actorsOf(c.act).map((_, i) => `jti-hop${i}`) } : c;
}

const revocation = (revoked: (t: TokenFacts) => boolean = () => false, suspended: (p: string) => boolean = () => false): RevocationService =>
  ({ isRevoked: revoked, isSuspended: suspended }) as unknown as RevocationService;
/** A view where `plugin` is revoked: as RevocationView, a token is covered when its own or any chain plugin is. */
const pluginRevoked = (plugin: string) => (t: TokenFacts) => [t.plugin, ...(t.chainPlugins ?? [])].includes(plugin);

async function upstreamOf(c: LeashTokenClaims, p = policy()): Promise<Upstream> {
  return verifyUpstream('token', { verifyToken: async () => c, revocation: revocation() }, p);
}

function allow(p: CompiledPolicy, pluginId: string, audience: string, scopes: string[] | undefined): Extract<Decision, { allow: true }> {
  const d = p.evaluate({
    plugin: p.plugins.get(pluginId)!,
    identity: { issuer: 'cluster', kind: 'kubernetes', subject: `system:serviceaccount:plugins:${pluginId}`, attributes: {}, issuedAt: nowS, expiresAt: nowS + 600, tokenDigest: 'd' },
    task: { id: 'task-1', plugins: [pluginId], attributes: {}, createdAt: NOW - 1000, expiresAt: NOW + 3_600_000, createdBy: 'o', state: 'active', endedAt: undefined, endedBy: undefined },
    now: NOW,
    request: { audience, scopes, ttl: undefined, params: {} },
  });
  if (!d.allow) throw new Error(`policy denied: ${d.code} ${d.description}`);
  return d;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof LeashError) return err.code;
    throw err;
  }
  return 'OK';
}

async function asyncCodeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof LeashError) return err.code;
    throw err;
  }
  return 'OK';
}

const s = (over: Partial<Settings['delegation']> = {}): Settings => settings({ delegation: { ...settings().delegation, ...over } });

describe('act claim', () => {
  it('nests newest outermost and reads back oldest first', () => {
    const act = actOf(['c', 'b']);
    expect(act).toEqual({ sub: 'c', act: { sub: 'b' } });
    expect(actorsOf(act)).toEqual(['b', 'c']);
    expect(parseActClaim(act)).toEqual(act);
  });

  it('rejects malformed or too deep act claims', () => {
    expect(parseActClaim({})).toBeUndefined();
    expect(parseActClaim({ sub: '' })).toBeUndefined();
    expect(parseActClaim({ sub: 1 })).toBeUndefined();
    expect(parseActClaim([{ sub: 'a' }])).toBeUndefined();
    expect(parseActClaim({ sub: 'a', act: 'b' })).toBeUndefined();
    expect(parseActClaim({ sub: 'a', extra: true })).toBeUndefined();
    let deep: Record<string, unknown> = { sub: 'p0' };
    for (let i = 1; i <= 11; i++) deep = { sub: `p${i}`, act: deep };
    expect(parseActClaim(deep)).toBeUndefined();
  });

  it('chain_effects must be known, unique effects', () => {
    expect(parseChainEffects(['read', 'write'])).toEqual(['read', 'write']);
    expect(parseChainEffects(['read', 'read'])).toBeUndefined();
    expect(parseChainEffects(['teleport'])).toBeUndefined();
    expect(parseChainEffects('read')).toBeUndefined();
  });
});

describe('verifyUpstream', () => {
  it('a root token: chain [sub], effect from the current policy grant', async () => {
    const up = await upstreamOf(claims());
    expect(up.chain).toEqual(['a']);
    expect(up.act).toBeUndefined();
    expect(up.effects).toEqual(['read']);
  });

  it('a delegated token: chain root first, effects from chain_effects', async () => {
    const up = await upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read', 'write'] }));
    expect(up.chain).toEqual(['a', 'b', 'c']);
    expect(up.effects).toEqual(['read', 'write']);
  });

  it('refuses unverifiable, revoked and inconsistent upstream tokens', async () => {
    const p = policy();
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => undefined, revocation: revocation() }, p))).toBe('ERR_UPSTREAM_TOKEN_INVALID');
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => claims(), revocation: revocation((t) => t.jti === 'jti-up') }, p))).toBe('ERR_UPSTREAM_TOKEN_REVOKED');
    // any plugin of the chain revoked (at or after the token's iat) or suspended revokes the chain
    const abc = claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read'] });
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => abc, revocation: revocation(pluginRevoked('a')) }, p))).toBe('ERR_UPSTREAM_TOKEN_REVOKED');
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => abc, revocation: revocation(pluginRevoked('b')) }, p))).toBe('ERR_UPSTREAM_TOKEN_REVOKED');
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => abc, revocation: revocation(undefined, (id) => id === 'a') }, p))).toBe('ERR_UPSTREAM_TOKEN_REVOKED');
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => abc, revocation: revocation(pluginRevoked('d')) }, p))).toBe('OK');
    // revoking any token the upstream derives from (its chain_jti) revokes the chain: the check is handed chain_jti
    const seen: TokenFacts[] = [];
    const byUpstream = revocation((t) => (seen.push(t), t.upstream?.includes('jti-hop0') === true));
    expect(await asyncCodeOf(() => verifyUpstream('t', { verifyToken: async () => abc, revocation: byUpstream }, p))).toBe('ERR_UPSTREAM_TOKEN_REVOKED');
    expect(seen[0]).toMatchObject({ jti: 'jti-up', plugin: 'c', upstream: ['jti-hop0', 'jti-hop1'], chainPlugins: ['a', 'b'] });
    // a delegated token without chain_jti (signed before the claim existed) cannot extend a chain
    expect(await asyncCodeOf(() => upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read'], chain_jti: undefined }), p))).toBe(
      'ERR_UPSTREAM_TOKEN_INVALID',
    );
    // plugin must be the newest actor
    expect(await asyncCodeOf(() => upstreamOf(claims({ plugin: 'b', client_id: 'b' }), p))).toBe('ERR_UPSTREAM_TOKEN_INVALID');
    expect(await asyncCodeOf(() => upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'b' } }), p))).toBe('ERR_UPSTREAM_TOKEN_INVALID');
    // a root token whose grant left policy: effect unknown, fail closed
    expect(await asyncCodeOf(() => upstreamOf(claims({ aud: 'https://gone.example.com' }), p))).toBe('ERR_DELEGATION_NOT_ALLOWED');
  });
});

describe('checkDelegationTarget', () => {
  it('returns the upstream task for a listed target', async () => {
    const p = policy();
    const out = checkDelegationTarget(await upstreamOf(claims()), p.plugins.get('b')!, undefined, p, s());
    expect(out.taskId).toBe('task-1');
    expect(out.reasons.join('\n')).toContain('a → b');
    expect(checkDelegationTarget(await upstreamOf(claims()), p.plugins.get('b')!, 'task-1', p, s()).taskId).toBe('task-1');
  });

  it('refuses unlisted targets, cycles, depth, missing and mismatched tasks', async () => {
    const p = policy();
    const up = await upstreamOf(claims());
    expect(codeOf(() => checkDelegationTarget(up, p.plugins.get('c')!, undefined, p, s()))).toBe('ERR_DELEGATION_NOT_ALLOWED');
    const ab = await upstreamOf(claims({ plugin: 'b', client_id: 'b', act: { sub: 'b' }, chain_effects: ['read'] }));
    expect(codeOf(() => checkDelegationTarget(ab, p.plugins.get('a')!, undefined, p, s()))).toBe('ERR_DELEGATION_CYCLE');
    expect(codeOf(() => checkDelegationTarget(ab, p.plugins.get('c')!, undefined, p, s({ max_depth: 1 })))).toBe('ERR_DELEGATION_DEPTH');
    expect(codeOf(() => checkDelegationTarget(ab, p.plugins.get('c')!, undefined, p, s({ max_depth: 2 })))).toBe('OK');
    const abc = await upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read'] }));
    expect(codeOf(() => checkDelegationTarget(abc, p.plugins.get('d')!, undefined, p, s({ max_depth: 2 })))).toBe('ERR_DELEGATION_DEPTH');
    expect(codeOf(() => checkDelegationTarget(abc, p.plugins.get('d')!, undefined, p, s({ max_depth: 3 })))).toBe('OK');
    const noTask = await upstreamOf(claims({ task: undefined }));
    expect(codeOf(() => checkDelegationTarget(noTask, p.plugins.get('b')!, undefined, p, s()))).toBe('ERR_DELEGATION_TASK_MISMATCH');
    expect(codeOf(() => checkDelegationTarget(up, p.plugins.get('b')!, 'task-2', p, s()))).toBe('ERR_DELEGATION_TASK_MISMATCH');
  });

  it('refuses a chain whose plugin left policy', async () => {
    const p = policy();
    const up = await upstreamOf(claims({ plugin: 'b', client_id: 'b', act: { sub: 'b' }, sub: 'ghost', chain_effects: ['read'] }));
    expect(codeOf(() => checkDelegationTarget(up, p.plugins.get('c')!, undefined, p, s()))).toBe('ERR_DELEGATION_NOT_ALLOWED');
  });
});

describe('narrowForChain', () => {
  it('builds sub, act, chain, effects and the TTL cap', async () => {
    const p = policy();
    const up = await upstreamOf(claims());
    const out = narrowForChain(up, p.plugins.get('b')!, allow(p, 'b', CRM, ['c:search']), ['c:search'], p, s(), NOW);
    expect(out).toMatchObject({ scopes: ['c:search'], ttlCap: 120, subject: 'a', act: { sub: 'b' }, chain: ['a', 'b'], effects: ['read'], upstreamJtis: ['jti-up'], needsApproval: false });
    const abc = await upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read', 'write'], exp: nowS + 30 }));
    const out2 = narrowForChain(abc, p.plugins.get('d')!, allow(p, 'd', CRM, undefined), undefined, p, s(), NOW + 500);
    expect(out2).toMatchObject({ scopes: ['c:read'], ttlCap: 29, subject: 'a', act: { sub: 'd', act: { sub: 'c', act: { sub: 'b' } } }, chain: ['a', 'b', 'c', 'd'], effects: ['read', 'write'] });
    // chain_jti of d's token: the upstream's own chain_jti (root's token first), then the upstream's jti.
    expect(out2.upstreamJtis).toEqual(['jti-hop0', 'jti-hop1', 'jti-up']);
  });

  it('scopes never exceed the root, an intermediate hop, or the upstream token', async () => {
    const p = policy();
    const up = await upstreamOf(claims());
    // b holds c:delete, the root a does not
    expect(codeOf(() => narrowForChain(up, p.plugins.get('b')!, allow(p, 'b', CRM, ['c:delete']), ['c:delete'], p, s(), NOW))).toBe('ERR_DELEGATION_SCOPE_ESCALATION');
    // b's default (c:delete) is out of reach: no scope left
    expect(codeOf(() => narrowForChain(up, p.plugins.get('b')!, allow(p, 'b', CRM, undefined), undefined, p, s(), NOW))).toBe('ERR_DELEGATION_SCOPE_ESCALATION');
    // the upstream token for the same audience only holds c:read
    const narrow = await upstreamOf(claims({ scope: 'c:read' }));
    expect(codeOf(() => narrowForChain(narrow, p.plugins.get('b')!, allow(p, 'b', CRM, ['c:search']), ['c:search'], p, s(), NOW))).toBe('ERR_DELEGATION_SCOPE_ESCALATION');
    // the root holds no grant for MAIL: the audience itself is the escalation (invalid_target)
    expect(codeOf(() => narrowForChain(up, p.plugins.get('b')!, allow(p, 'b', MAIL, undefined), undefined, p, s(), NOW))).toBe('ERR_DELEGATION_AUDIENCE_ESCALATION');
    // a → b → c → d: c only holds c:read c:search; b's token for CRM held c:search; d holds c:read only
    const abc = await upstreamOf(claims({ plugin: 'c', client_id: 'c', act: { sub: 'c', act: { sub: 'b' } }, chain_effects: ['read'], scope: 'c:read' }));
    expect(narrowForChain(abc, p.plugins.get('d')!, allow(p, 'd', CRM, ['c:read']), ['c:read'], p, s(), NOW).scopes).toEqual(['c:read']);
  });

  it('refuses an upstream token with less than a second left', async () => {
    const p = policy();
    const up = await upstreamOf(claims({ exp: nowS }));
    expect(codeOf(() => narrowForChain(up, p.plugins.get('b')!, allow(p, 'b', CRM, ['c:read']), ['c:read'], p, s(), NOW))).toBe('ERR_UPSTREAM_TOKEN_INVALID');
  });

  it('toxic combinations: deny, approval, and capability rather than the requested grant', async () => {
    const p = policy();
    const hrUp = await upstreamOf(claims({ sub: 'hr', plugin: 'hr', client_id: 'hr', aud: HR, scope: 'hr:read' }));
    expect(hrUp.effects).toEqual(['read-sensitive']);
    // mailer asks for its harmless HR read grant, but it CAN exfiltrate: denied by default
    expect(codeOf(() => narrowForChain(hrUp, p.plugins.get('mailer')!, allow(p, 'mailer', HR, ['hr:read']), ['hr:read'], p, s(), NOW))).toBe('ERR_DELEGATION_TOXIC');
    const approval = s({ toxic_combinations: [{ upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'approval' }] });
    const out = narrowForChain(hrUp, p.plugins.get('mailer')!, allow(p, 'mailer', HR, ['hr:read']), ['hr:read'], p, approval, NOW);
    expect(out.needsApproval).toBe(true);
    expect(out.effects).toEqual(['read-sensitive', 'read']);
    expect(out.reasons.join('\n')).toContain('toxic combination');
    // no rules configured: allowed without approval
    expect(narrowForChain(hrUp, p.plugins.get('mailer')!, allow(p, 'mailer', HR, ['hr:read']), ['hr:read'], p, s({ toxic_combinations: [] }), NOW).needsApproval).toBe(false);
    // b cannot exfiltrate: no rule fires, but the sensitive read is carried in the effects
    const hrB = narrowForChain(hrUp, p.plugins.get('b')!, allow(p, 'b', CRM, ['c:read']), ['c:read'], policyWithHrCrm(), s(), NOW);
    expect(hrB.effects).toEqual(['read-sensitive', 'read']);
  });
});

/** hr also holds a CRM grant, so hr → b can reach CRM. */
function policyWithHrCrm(): CompiledPolicy {
  return compilePolicy(
    config([
      plugin('b', { grants: [grant({ audience: CRM, scopes: ['c:read'] })] }),
      plugin('hr', { delegate_to: ['b'], grants: [grant({ audience: HR, scopes: ['hr:read'], effect: 'read-sensitive' }), grant({ audience: CRM, scopes: ['c:read'] })] }),
    ]),
  );
}
