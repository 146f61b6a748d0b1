import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parse } from 'yaml';
import { MANAGEMENT_ROUTES, ROUTES, type RouteSpec } from '../../src/http/surface.js';
import { ADMIN_ROUTES as ADMIN_TABLE } from '../../src/http/admin/table.js';
import { EXCHANGE_PARAMS } from '../../src/http/oauth/provider.js';
import { startTestBroker } from '../support/broker.js';

const SPEC_PATH = 'docs/openapi.yaml';
const spec = parse(readFileSync(SPEC_PATH, 'utf8')) as {
  paths: Record<string, Record<string, unknown> & { servers?: Array<{ url: string }> }>;
  components: { schemas: Record<string, Schema> };
};
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/** `/tasks/{id}` (OpenAPI) is `/tasks/:id` (the route table). */
const toRoutePath = (p: string) => p.replace(/\{([^}]+)\}/g, ':$1');
const routeKeys = (routes: readonly RouteSpec[]) => routes.flatMap((r) => r.methods.map((m) => `${m} ${r.path}`));
const specKeys = (pred: (path: string) => boolean = () => true) =>
  Object.entries(spec.paths)
    .filter(([p]) => pred(toRoutePath(p)))
    .flatMap(([p, item]) =>
      Object.keys(item)
        .filter((k) => METHODS.includes(k))
        .map((m) => `${m.toUpperCase()} ${toRoutePath(p)}`),
    );

describe('docs/openapi.yaml', () => {
  it('lints clean with Redocly (strict rule set: no error, no warning)', () => {
    const cli = createRequire(import.meta.url).resolve('@redocly/cli/bin/cli.js');
    const run = spawnSync(process.execPath, [cli, 'lint', SPEC_PATH, '--config', 'docs/redocly.yaml', '--format', 'json'], {
      encoding: 'utf8',
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
      timeout: 60_000,
    });
    const report = JSON.parse(run.stdout) as { totals: { errors: number; warnings: number }; problems: Array<{ ruleId: string; message: string; location: Array<{ pointer: string }> }> };
    const problems = report.problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
    expect(problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
    expect(run.status).toBe(0);
  });

  it('describes every route of the route table (src/http/surface.ts), on both ports', () => {
    const documented = new Set(specKeys());
    const missing = routeKeys([...ROUTES, ...MANAGEMENT_ROUTES]).filter((k) => !documented.has(k));
    // Named one per line, so a new route's failure says exactly what to document.
    expect(missing.map((k) => `${k} is served (src/http/surface.ts) but not described in ${SPEC_PATH}`)).toEqual([]);
  });

  it('describes no route the code does not serve', () => {
    const served = new Set(routeKeys([...ROUTES, ...MANAGEMENT_ROUTES]));
    const extra = specKeys().filter((k) => !served.has(k));
    expect(extra.map((k) => `${k} is described in ${SPEC_PATH} but not in the route table (src/http/surface.ts)`)).toEqual([]);
  });

  it('puts exactly the management routes on the management server', () => {
    const management = new Set(MANAGEMENT_ROUTES.map((r) => r.path));
    for (const [path, item] of Object.entries(spec.paths)) {
      const onManagement = (item.servers ?? []).some((s) => new URL(s.url).port === '9090');
      expect([path, onManagement]).toEqual([path, management.has(toRoutePath(path))]);
    }
  });

  /** The admin API (tasks and /admin): bearer-authenticated, so every operation says 401 and the app answers it. */
  const ADMIN_ROUTES = routeKeys(ROUTES).filter((k) => / \/(tasks|admin)(\/|$)/.test(k));

  it('every admin operation documents 401 (no anonymous admin call)', () => {
    expect(ADMIN_ROUTES.length).toBeGreaterThan(10);
    for (const key of ADMIN_ROUTES) expect([key, Object.keys((operation(key) as { responses: object }).responses)]).toEqual([key, expect.arrayContaining(['401'])]);
  });

  it('every admin route exists on the app and refuses an anonymous call with 401', async () => {
    const tb = await startTestBroker();
    try {
      for (const route of ADMIN_ROUTES) {
        const [method, path] = route.split(' ') as [string, string];
        const res = await fetch(`${tb.url}${path.replace(':id', 'crm-reader').replace(':kid', 'some-kid')}`, {
          method,
          headers: { 'content-type': 'application/json' },
          body: method === 'GET' ? undefined : '{}',
        });
        expect(`${route} -> ${res.status}`).toBe(`${route} -> 401`);
      }
    } finally {
      await tb.close();
    }
  });

  /**
   * Request bodies: the members the code accepts, against the schema the document gives.
   * The token endpoint's parameters come from the provider; every admin route's from its
   * TypeBox body in the route table (src/http/admin/table.ts). `closed`: unknown members are
   * refused, so the document must say `additionalProperties: false`.
   */
  const adminBodies = ADMIN_TABLE.filter((r) => r.body !== undefined).map((r) => {
    const body = r.body as { properties?: Record<string, unknown>; additionalProperties?: unknown };
    return [`${r.method} ${r.path}`, { fields: Object.keys(body.properties ?? {}), closed: body.additionalProperties === false }] as const;
  });
  const REQUEST_BODIES: Record<string, { readonly fields: readonly string[]; readonly closed: boolean }> = {
    'POST /token': { fields: ['grant_type', 'client_id', ...EXCHANGE_PARAMS], closed: false },
    ...Object.fromEntries(adminBodies),
  };

  it.each(Object.entries(REQUEST_BODIES))('%s: the documented body has the members the code accepts', (key, code) => {
    const schema = requestBodySchema(key);
    expect({ key, members: Object.keys(schema.properties ?? {}).sort() }).toEqual({ key, members: [...code.fields].sort() });
    expect({ key, closed: schema.additionalProperties === false }).toEqual({ key, closed: code.closed });
    for (const r of schema.required ?? []) expect([key, r, code.fields.includes(r)]).toEqual([key, r, true]);
  });

  it('every JSON or form request body of the document is checked above', () => {
    const withBodies = specKeys().filter((k) => operation(k).requestBody !== undefined);
    // The feed and RFC 7662/7009 forms are parsed by the OAuth form reader (client authentication plus a few parameters), not a closed field list.
    // Usage reports are checked record by record (src/usage/report.ts), each record's problems answered by index.
    const formOnly = new Set(['POST /introspect', 'POST /revoke', 'POST /revocations', 'POST /revocations/stream', 'POST /usage', 'POST /usage/budget']);
    expect(withBodies.filter((k) => !formOnly.has(k) && !(k in REQUEST_BODIES))).toEqual([]);
  });
});

interface Schema {
  readonly $ref?: string;
  readonly type?: string;
  readonly properties?: Record<string, Schema>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Schema;
  readonly allOf?: readonly Schema[];
}

function operation(key: string): { responses?: object; requestBody?: { $ref?: string; content: Record<string, { schema: Schema }> } } {
  const [method, path] = key.split(' ') as [string, string];
  const specPath = Object.keys(spec.paths).find((p) => toRoutePath(p) === path);
  if (!specPath) throw new Error(`${key}: not in ${SPEC_PATH}`);
  const op = spec.paths[specPath]![method.toLowerCase()] as ReturnType<typeof operation> | undefined;
  if (!op) throw new Error(`${key}: no ${method} operation in ${SPEC_PATH}`);
  return op;
}

function resolve(schema: Schema): Schema {
  if (schema.$ref) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = spec.components.schemas[name];
    if (!target) throw new Error(`unresolved ${schema.$ref}`);
    return resolve(target);
  }
  return schema;
}

function requestBodySchema(key: string): Schema {
  const body = operation(key).requestBody;
  if (!body) throw new Error(`${key}: ${SPEC_PATH} gives it no requestBody`);
  const media = body.content['application/json'] ?? body.content['application/x-www-form-urlencoded'];
  if (!media) throw new Error(`${key}: requestBody is neither JSON nor a form`);
  return resolve(media.schema);
}
