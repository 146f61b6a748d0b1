import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import { ADMIN_ROUTES } from '../../src/http/admin/table.js';
import { ROUTES } from '../../src/http/surface.js';
import { OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

type Json = Record<string, any>;
const doc = parse(readFileSync('docs/openapi.yaml', 'utf8')) as Json;
const openapiPath = (path: string) => path.replace(/:([A-Za-z]+)/g, '{$1}');

/** A `$ref` of the document, followed. */
function resolve(node: Json): Json {
  if (typeof node.$ref !== 'string') return node;
  return resolve(
    node.$ref
      .slice(2)
      .split('/')
      .reduce((n: Json, k: string) => n[k], doc),
  );
}

describe('the admin route table (src/http/admin/table.ts)', () => {
  it('is what surface.ts lists for /tasks and /admin, route for route', () => {
    const fromSurface = ROUTES.filter((r) => r.path === '/tasks' || r.path.startsWith('/tasks/') || r.path.startsWith('/admin/')).flatMap((r) => r.methods.map((m) => `${m} ${r.path}`));
    expect(fromSurface.sort()).toEqual(ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`).sort());
  });

  it('names each route once, with at least one role', () => {
    expect(new Set(ADMIN_ROUTES.map((r) => r.route)).size).toBe(ADMIN_ROUTES.length);
    expect(new Set(ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`)).size).toBe(ADMIN_ROUTES.length);
    for (const r of ADMIN_ROUTES) if (r.roles !== 'authenticated') expect(r.roles.length).toBeGreaterThan(0);
  });

  describe.each(ADMIN_ROUTES.map((r) => [`${r.method} ${r.path}`, r] as const))('%s in docs/openapi.yaml', (_name, spec) => {
    const op = doc.paths?.[openapiPath(spec.path)]?.[spec.method.toLowerCase()] as Json | undefined;

    it('is documented, with 401 and (for a route limited to roles) 403', () => {
      expect(op).toBeDefined();
      expect(Object.keys(op!.responses)).toContain('401');
      expect(Object.keys(op!.responses)).toContain('403');
    });

    it('documents the body the route validates: same members, same required ones, unknown members refused', () => {
      const documented = op?.requestBody ? resolve(op.requestBody.content['application/json'].schema as Json) : undefined;
      if (!spec.body) {
        expect(documented).toBeUndefined();
        return;
      }
      const schema = spec.body as TSchema & Json;
      expect(documented).toBeDefined();
      expect(op!.requestBody.required ?? false).toBe(!spec.bodyOptional);
      expect(Object.keys(documented!.properties ?? {}).sort()).toEqual(Object.keys(schema.properties ?? {}).sort());
      expect([...(documented!.required ?? [])].sort()).toEqual([...(schema.required ?? [])].sort());
      expect(documented!.additionalProperties).toBe(false);
      expect(schema.additionalProperties).toBe(false);
    });

    it('documents the query parameters the route reads', () => {
      const documented = ((op?.parameters ?? []) as Json[]).filter((p) => p.in === 'query').map((p) => p.name as string);
      expect(documented.sort()).toEqual(Object.keys((spec.query as Json | undefined)?.properties ?? {}).sort());
    });
  });
});

describe('the admin route shape, on a running broker', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => tb.close());

  const call = (method: string, path: string, key: string | undefined, body?: unknown) =>
    fetch(`${tb.url}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const count = async (route: string, outcome: string): Promise<number> => {
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    const m = new RegExp(`^leash_admin_requests_total\\{route="${route.replace('.', '\\.')}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };

  it('reports every problem of a body at once, each with its path, in one error format', async () => {
    const res = await call('POST', '/admin/keys/rotate', OPS_KEY, { force: 'yes', reason: 'x', now: true });
    expect(res.status).toBe(400);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as Json;
    expect(body.error).toBe('invalid_request');
    expect(body.error_description).toMatch(/\(ERR_ADMIN_INVALID\)$/);
    for (const part of ['/force', '/reason', 'now']) expect(body.error_description).toContain(part);
  });

  it('counts every success and every failure of every route the same way (reads included)', async () => {
    const id = await tb.openTask();
    const before = {
      get: await count('tasks.get', 'ok'),
      suspended: await count('plugins.suspended', 'ok'),
      invalid: await count('tasks.open', 'invalid'),
      anon: await count('keys.list', 'unauthenticated'),
    };
    expect((await call('GET', `/tasks/${id}`, ORCHESTRATOR_KEY)).status).toBe(200);
    expect((await call('GET', '/admin/plugins/suspended', OPS_KEY)).status).toBe(200);
    expect((await call('POST', '/tasks', ORCHESTRATOR_KEY, { plugins: [] })).status).toBe(400);
    expect((await call('GET', '/admin/keys', undefined)).status).toBe(401);
    expect(await count('tasks.get', 'ok')).toBe(before.get + 1);
    expect(await count('plugins.suspended', 'ok')).toBe(before.suspended + 1);
    expect(await count('tasks.open', 'invalid')).toBe(before.invalid + 1);
    expect(await count('keys.list', 'unauthenticated')).toBe(before.anon + 1);
  });

  it('authenticates before it reads a body: an anonymous call with a broken body is 401, audited', async () => {
    const res = await fetch(`${tb.url}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"plugins":' });
    expect(res.status).toBe(401);
    const events = await tb.broker.testing.store.read(1, 100_000);
    expect(events.filter((e) => e.type === 'admin.denied' && e.event.route === 'tasks.open').length).toBeGreaterThan(0);
  });
});
