import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.js';
import { createHash } from 'node:crypto';
import { parseConfig } from '../../src/config/load.js';
import type { LoadedConfig } from '../../src/config/load.js';
import type { LeashConfig } from '../../src/config/schema.js';
import { Broker, type BrokerOptions } from '../../src/broker.js';
import { CLUSTER_ISSUER, TestCluster } from './cluster.js';

export const ORCHESTRATOR_KEY = 'test-orchestrator-key-0123456789';
export const OPS_KEY = 'test-ops-key-0123456789';
export const CRM_API = 'https://crm.example.com/api';
export const TICKETS_API = 'https://tickets.example.com';
export const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

export { freePort };

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** The policy most integration tests use; `patch` edits it before it is parsed. */
export function testConfigInput(opts: { issuer: string; dir: string; cluster: TestCluster }): Record<string, unknown> {
  return {
    version: 1,
    settings: {
      issuer: opts.issuer,
      listen: { host: '127.0.0.1', port: 0 },
      management: { listen: { host: '127.0.0.1', port: 0 } },
      store: { path: join(opts.dir, 'leash.db') },
      keys: { dir: join(opts.dir, 'keys') },
      // Checkpoints only where a test asks for them: a timed one landing between two reads
      // of the chain would make "exactly these events" assertions flaky.
      audit: { stdout: false, checkpoint_every_events: 1_000_000, checkpoint_interval_ms: 3_600_000 },
      // A jest worker on a loaded machine can stall its loop past any threshold: tests of other things must not see 503s for it.
      admission: { max_event_loop_delay_ms: 0 },
    },
    admin: {
      api_keys: [
        { id: 'orchestrator', sha256: sha(ORCHESTRATOR_KEY), roles: ['orchestrator'] },
        { id: 'ops', sha256: sha(OPS_KEY), roles: ['ops', 'security'] },
      ],
    },
    trusted_issuers: [{ name: 'test-cluster', kind: 'kubernetes', issuer: CLUSTER_ISSUER, audience: 'leash', jwks: { inline: opts.cluster.jwks() }, max_token_age: 3600 }],
    plugins: [
      {
        id: 'crm-reader',
        owner: 'team-crm@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:crm-reader' }],
        grants: [{ audience: CRM_API, scopes: ['contacts:read', 'contacts:search', 'contacts:export'], default_scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
      },
      {
        id: 'ticket-writer',
        owner: 'team-support@example.com',
        risk: 'high',
        bindings: [{ issuer: 'test-cluster', subject: { glob: 'system:serviceaccount:plugins:ticket-writer-*' } }],
        grants: [{ audience: TICKETS_API, scopes: ['tickets:write'], kind: 'jwt', effect: 'write', approval: 'none', max_ttl: 120 }],
      },
      {
        id: 'prod-only',
        owner: 'team-ops@example.com',
        risk: 'medium',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:prod-only' }],
        grants: [
          { audience: 'https://deploy.example.com', scopes: ['deploy:read'], kind: 'jwt', effect: 'read', max_ttl: 60, conditions: [{ attr: 'task.env', equals: 'prod' }] },
          { audience: 'https://audit.example.com', scopes: ['audit:write'], kind: 'jwt', effect: 'write', approval: 'human', max_ttl: 60 },
        ],
      },
    ],
  };
}

/**
 * A guardrail exception valid for ~80 days from now, for test policies that deliberately
 * break a guardrail (an exfiltrating grant without approval, a write without a task).
 */
export function testException(plugin: string, grant: string | undefined, guardrail: string, id = `exc-${plugin}-${guardrail}`): Record<string, unknown> {
  const day = 86_400_000;
  return {
    id,
    plugin,
    ...(grant !== undefined ? { grant } : {}),
    guardrail,
    reason: 'test policy exercises this on purpose',
    ticket: 'TEST-1',
    owner: 'tests@example.com',
    approved_by: 'security@example.com',
    created_at: new Date(Date.now() - day).toISOString(),
    expires_at: new Date(Date.now() + 80 * day).toISOString(),
  };
}

export interface TestBroker {
  readonly url: string;
  /** The management port: `/healthz`, `/readyz`, `/metrics`. */
  readonly managementUrl: string;
  readonly broker: Broker;
  readonly cluster: TestCluster;
  readonly dir: string;
  readonly config: LeashConfig;
  openTask(body?: Record<string, unknown>): Promise<string>;
  exchange(params: Record<string, string | string[]>, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>;
  close(opts?: { keepDir?: boolean }): Promise<void>;
}

export function loadedFrom(input: unknown, dir: string): LoadedConfig {
  const config = parseConfig(input, { baseDir: dir });
  return { config, path: join(dir, 'leash.yaml'), baseDir: dir, digest: sha(JSON.stringify(input)) };
}

/** A real broker on a loopback port with a temp dir for keys and SQLite. */
export async function startTestBroker(opts: { patch?: (cfg: Record<string, any>) => void; cluster?: TestCluster; dir?: string; broker?: BrokerOptions } = {}): Promise<TestBroker> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'leash-test-')));
  const cluster = opts.cluster ?? (await TestCluster.create());
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const input = testConfigInput({ issuer: url, dir, cluster }) as Record<string, any>;
  opts.patch?.(input);
  const broker = await Broker.create(loadedFrom(input, dir), { defaultMetrics: false, write: () => undefined, auditWrite: () => undefined, ...opts.broker });
  await broker.listen(port, '127.0.0.1');
  return {
    url,
    managementUrl: broker.managementUrl!,
    broker,
    cluster,
    dir,
    config: broker.config,
    async openTask(body = { plugins: ['crm-reader'] }) {
      const res = await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as { id: string };
      if (res.status !== 201) throw new Error(`open task failed: ${res.status} ${JSON.stringify(json)}`);
      return json.id;
    },
    async exchange(params, headers = {}) {
      const form = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) for (const one of Array.isArray(v) ? v : [v]) form.append(k, one);
      const res = await fetch(`${url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: form });
      const text = await res.text();
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        body = { raw: text };
      }
      return { status: res.status, body, headers: res.headers };
    },
    async close({ keepDir = false } = {}) {
      await broker.close();
      if (!keepDir && !opts.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
