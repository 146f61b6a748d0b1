import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { startTestBroker } from '../support/broker.js';

/** The admin routes the app mounts; the OpenAPI document must describe exactly these. */
const ADMIN_ROUTES = [
  'post /tasks',
  'get /tasks/{id}',
  'delete /tasks/{id}',
  'post /admin/plugins/{id}/suspend',
  'post /admin/plugins/{id}/resume',
  'get /admin/plugins/suspended',
  'post /admin/revocations',
  'post /admin/aws/deny-sessions',
  'get /admin/keys',
  'post /admin/keys/rotate',
  'post /admin/keys/{kid}/retire',
  'post /admin/keys/{kid}/revoke',
  'get /admin/approvals',
  'get /admin/approvals/{id}',
  'post /admin/approvals/{id}/approve',
  'post /admin/approvals/{id}/deny',
  'get /admin/review',
  'get /admin/tasks/{id}/timeline',
];

describe('docs/openapi.yaml', () => {
  const doc = parse(readFileSync('docs/openapi.yaml', 'utf8')) as { openapi: string; paths: Record<string, Record<string, unknown>> };

  it('is OpenAPI 3.1 and describes every admin route, and only those', () => {
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m))
        .map((m) => `${m} ${path}`),
    );
    expect(documented.sort()).toEqual([...ADMIN_ROUTES].sort());
  });

  it('every operation documents 401 (no anonymous admin call)', () => {
    for (const ops of Object.values(doc.paths)) {
      for (const [m, op] of Object.entries(ops)) {
        if (m === 'parameters') continue;
        expect(Object.keys((op as { responses: object }).responses)).toContain('401');
      }
    }
  });

  it('every documented route exists on the app and refuses an anonymous call with 401', async () => {
    const tb = await startTestBroker();
    try {
      for (const route of ADMIN_ROUTES) {
        const [method, path] = route.split(' ') as [string, string];
        const res = await fetch(`${tb.url}${path.replace('{id}', 'crm-reader').replace('{kid}', 'some-kid')}`, {
          method: method.toUpperCase(),
          headers: { 'content-type': 'application/json' },
          body: method === 'get' ? undefined : '{}',
        });
        expect(`${route} -> ${res.status}`).toBe(`${route} -> 401`);
      }
    } finally {
      await tb.close();
    }
  });
});
