import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { compilePolicy } from '../../src/policy/compile.js';
import { policyRemovals } from '../../src/revocation/reload-revocations.js';
import type { Store } from '../../src/store/store.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { CRM_API, EXCHANGE, JWT_TYPE, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { basic, sha256hex } from '../http/introspect-support.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

/**
 * A reload that removes a plugin or a grant, or narrows a grant's scopes, revokes exactly
 * the live tokens that depended on them: introspection answers inactive for those and
 * active for every other one.
 */

const NOTES_API = 'https://notes.example.com';
const DOOMED_API = 'https://doomed.example.com';
const KEEPER_API = 'https://keeper.example.com';
const RS_SECRET = 'all-apis-secret-0123456789';

/** The policy before the reload; `after` applies the removals. */
function policy(cfg: Record<string, any>, after = false): void {
  cfg.resource_servers = [{ id: 'all-apis', audiences: [CRM_API, NOTES_API, DOOMED_API, KEEPER_API], client_secret_sha256: sha256hex(RS_SECRET) }];
  const crm = cfg.plugins.find((p: any) => p.id === 'crm-reader');
  crm.grants = [
    {
      audience: CRM_API,
      scopes: after ? ['contacts:read', 'contacts:search'] : ['contacts:read', 'contacts:search', 'contacts:export'],
      default_scopes: ['contacts:read'],
      kind: 'jwt',
      effect: 'read',
      max_ttl: 300,
    },
    ...(after ? [] : [{ audience: NOTES_API, scopes: ['notes:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }]),
  ];
  const plugin = (id: string, audience: string) => ({
    id,
    owner: 'team@example.com',
    risk: 'low',
    bindings: [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${id}` }],
    grants: [{ audience, scopes: ['x:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
  });
  cfg.plugins.push(plugin('keeper', KEEPER_API));
  if (!after) cfg.plugins.push(plugin('doomed', DOOMED_API));
}

describe('policyRemovals (pure)', () => {
  it('names removed plugins, removed grants (audience + kind) and narrowed scopes; nothing for additions', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-reload-diff-'));
    try {
      const cluster = await TestCluster.create();
      const make = (after: boolean, extra?: (cfg: Record<string, any>) => void) => {
        const input = testConfigInput({ issuer: 'http://127.0.0.1:1', dir, cluster }) as Record<string, any>;
        policy(input, after);
        extra?.(input);
        return compilePolicy(loadedFrom(input, dir).config);
      };
      const before = make(false);
      expect(policyRemovals(before, make(true))).toEqual({
        plugins: ['doomed'],
        grants: [{ plugin: 'crm-reader', audience: NOTES_API, kind: 'jwt' }],
        scopes: [{ plugin: 'crm-reader', audience: CRM_API, kind: 'jwt', scopes: ['contacts:export'] }],
      });
      // The other way round only adds: nothing to revoke.
      expect(policyRemovals(make(true), before)).toEqual({ plugins: [], grants: [], scopes: [] });
      expect(policyRemovals(before, before)).toEqual({ plugins: [], grants: [], scopes: [] });
      // A disabled plugin counts as removed.
      expect(
        policyRemovals(
          before,
          make(false, (c) => (c.plugins.find((p: any) => p.id === 'keeper').disabled = true)),
        ).plugins,
      ).toEqual(['keeper']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('reload revokes the live tokens of what it removed (running broker)', () => {
  let tb: TestBroker;
  const listed: string[] = [];

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-reload-rev-'));
    // The real SQLite store, watched: which plugins' live tokens the reload reads.
    const inner = openSqliteStore({ path: join(dir, 'leash.db') });
    const store = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'listLiveIssuedForPlugin') return (plugin: string, now: number) => (listed.push(plugin), target.listLiveIssuedForPlugin(plugin, now));
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as Store;
    tb = await startTestBroker({ dir, broker: { store }, patch: (cfg) => policy(cfg) });
  });
  afterAll(async () => {
    const dir = tb.dir;
    await tb?.close();
    await rm(dir, { recursive: true, force: true });
  });

  let task: string | undefined;
  async function token(plugin: string, audience: string, scope?: string): Promise<string> {
    task ??= await tb.openTask({ plugins: ['crm-reader', 'doomed', 'keeper'] });
    const res = await tb.exchange({
      task,
      grant_type: EXCHANGE,
      client_id: plugin,
      subject_token: await tb.cluster.saToken({ sa: plugin }),
      subject_token_type: JWT_TYPE,
      audience,
      ...(scope ? { scope } : {}),
    });
    if (res.status !== 200) throw new Error(`exchange for ${plugin} ${audience}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }

  async function active(tok: string): Promise<boolean> {
    const res = await fetch(`${tb.url}/introspect`, {
      method: 'POST',
      headers: { authorization: basic('all-apis', RS_SECRET), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tok }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { active: boolean }).active;
  }

  it('introspection answers inactive for exactly the affected tokens, and one event says why', async () => {
    const t = {
      crmRead: await token('crm-reader', CRM_API, 'contacts:read'),
      crmReadSearch: await token('crm-reader', CRM_API, 'contacts:read contacts:search'),
      crmExport: await token('crm-reader', CRM_API, 'contacts:read contacts:export'),
      notes: await token('crm-reader', NOTES_API),
      doomed: await token('doomed', DOOMED_API),
      keeper: await token('keeper', KEEPER_API),
    };
    for (const tok of Object.values(t)) expect(await active(tok)).toBe(true);

    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Record<string, any>;
    policy(input, true);
    listed.length = 0;
    const result = await tb.broker.reload(loadedFrom(input, tb.dir));
    expect(result).toEqual({ ok: true });

    expect(await active(t.crmRead)).toBe(true);
    expect(await active(t.crmReadSearch)).toBe(true);
    expect(await active(t.keeper)).toBe(true);
    expect(await active(t.crmExport)).toBe(false);
    expect(await active(t.notes)).toBe(false);
    expect(await active(t.doomed)).toBe(false);

    // Only the plugins that lost something were read: never the whole token history.
    expect([...new Set(listed)].sort()).toEqual(['crm-reader', 'doomed']);

    const audit = await tb.broker.testing.store.read(1, 10_000);
    const ev = audit.filter((r) => r.type === 'policy.revoked_on_reload');
    expect(ev).toHaveLength(1);
    expect(ev[0]!.event).toMatchObject({
      actor: 'system:reload',
      plugins_removed: ['doomed'],
      grants_removed: [{ plugin: 'crm-reader', audience: NOTES_API, kind: 'jwt' }],
      scopes_narrowed: [{ plugin: 'crm-reader', audience: CRM_API, kind: 'jwt', scopes: ['contacts:export'] }],
      tokens_revoked: 2,
    });
    const revoked = audit.filter((r) => r.type === 'token.revoked' && String(r.event.reason).startsWith('policy.revoked_on_reload'));
    expect(revoked.map((r) => r.event.scope).sort()).toEqual(['plugin', 'token', 'token']);
    // The loaded event comes first: the policy was in force before its removals were revoked.
    expect(audit.findIndex((r) => r.type === 'policy.loaded' && r.event.initial === false)).toBeLessThan(audit.findIndex((r) => r.type === 'policy.revoked_on_reload'));
  });

  it('a reload that removes nothing revokes nothing and says nothing', async () => {
    const before = (await tb.broker.testing.store.read(1, 10_000)).length;
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Record<string, any>;
    policy(input, true);
    input.plugins.find((p: any) => p.id === 'keeper').owner = 'new-owner@example.com';
    listed.length = 0;
    expect(await tb.broker.reload(loadedFrom(input, tb.dir))).toEqual({ ok: true });
    const after = await tb.broker.testing.store.read(before + 1, 10_000);
    // The kinds a reload records: the introspections of the test before record their first
    // use (token.first_use) on the usage path's own schedule, which may land after `before`.
    const reloads = after.filter((r) => r.type.startsWith('policy.') || r.type === 'token.revoked');
    expect(reloads.map((r) => r.type)).toEqual(['policy.loaded']);
    expect(listed).toEqual([]);
  });
});
