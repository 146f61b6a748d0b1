import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Webhook } from 'standardwebhooks';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createWebhookNotifier, slackPayload, type WebhookConfig } from '../../src/approvals/notifier.js';
import { checkStepUp, DEFAULT_STEP_UP } from '../../src/approvals/step-up.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { compilePolicy } from '../../src/policy/compile.js';
import type { GrantConfig } from '../../src/config/schema.js';
import type { ApprovalRecord } from '../../src/store/records.js';
import { NOW, config, grant, identity, plugin } from '../policy/fixtures.js';

const approval: ApprovalRecord = {
  id: 'Zm9vYmFyYmF6cXV4cXV1eA',
  requestHash: 'HASH-NOT-FOR-NOTICES',
  plugin: 'ticket-writer',
  owner: 'team-support@example.com',
  task: 'tsk_0123456789ab',
  audience: 'https://tickets.example.com',
  scopes: ['tickets:write'],
  ttl: 120,
  kind: 'jwt',
  effect: 'write',
  risk: 'high',
  justification: 'close <!channel> duplicates & merge',
  chain: undefined,
  cause: 'grant',
  requestedAt: NOW,
  expiresAt: NOW + 900_000,
  state: 'pending',
  decidedAt: undefined,
  decidedBy: undefined,
  decisionReason: undefined,
  redeemBy: undefined,
  usedAt: undefined,
  lastPollAt: NOW,
};

interface Hit {
  headers: IncomingHttpHeaders;
  body: string;
}

describe('approver webhook', () => {
  let server: Server;
  let url: string;
  let hits: Hit[];
  let statuses: number[];
  let audit: Array<{ type: string; event: Record<string, unknown> }>;

  beforeEach(async () => {
    hits = [];
    statuses = [];
    audit = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        hits.push({ headers: req.headers, body });
        res.statusCode = statuses.shift() ?? 200;
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?token=SECRET-IN-URL`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  function notifier(cfg: Partial<WebhookConfig>, env: NodeJS.ProcessEnv = {}) {
    return createWebhookNotifier({
      webhook: () => ({ url, format: 'json', max_attempts: 3, ...cfg }),
      issuer: () => 'https://leash.example.com',
      audit: { record: async (type, event) => void audit.push({ type, event }) },
      env,
      backoffMs: 5,
    });
  }

  it('posts Leash JSON with what is asked, why and the risk, signed with Standard Webhooks (id, timestamp, HMAC)', async () => {
    const n = notifier({ secret_env: 'HOOK_SECRET' }, { HOOK_SECRET: 's3cr3t' });
    n.notify(approval);
    await n.idle();
    expect(hits).toHaveLength(1);
    const hit = hits[0]!;
    expect(hit.headers['content-type']).toBe('application/json');
    expect(hit.headers['webhook-id']).toBe(`msg_${approval.id}`);
    expect(Math.abs(Number(hit.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
    // The receiver's side, with the standardwebhooks library: a raw secret is its base64 key.
    const wh = new Webhook(Buffer.from('s3cr3t').toString('base64'));
    expect(() => wh.verify(hit.body, hit.headers as Record<string, string>)).not.toThrow();
    expect(() => wh.verify(hit.body.replace('ticket-writer', 'ticket-reader'), hit.headers as Record<string, string>)).toThrow();
    // Replayed later, outside the timestamp tolerance: refused.
    expect(() => wh.verify(hit.body, { ...(hit.headers as Record<string, string>), 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600) })).toThrow();
    expect(hit.headers['x-leash-signature']).toBeUndefined();
    expect(JSON.parse(hit.body)).toEqual({
      type: 'approval.requested',
      approval_id: approval.id,
      plugin: 'ticket-writer',
      owner: 'team-support@example.com',
      risk: 'high',
      task: 'tsk_0123456789ab',
      audience: 'https://tickets.example.com',
      scopes: ['tickets:write'],
      ttl: 120,
      kind: 'jwt',
      effect: 'write',
      justification: 'close <!channel> duplicates & merge',
      chain: null,
      cause: 'grant',
      requested_at: new Date(NOW).toISOString(),
      expires_at: new Date(NOW + 900_000).toISOString(),
      links: {
        self: `https://leash.example.com/admin/approvals/${approval.id}`,
        approve: `https://leash.example.com/admin/approvals/${approval.id}/approve`,
        deny: `https://leash.example.com/admin/approvals/${approval.id}/deny`,
      },
    });
    expect(hit.body).not.toContain('HASH-NOT-FOR-NOTICES');
    expect(audit).toEqual([]);
  });

  it('slack format: text + blocks, requester text escaped so it cannot mention or link', async () => {
    const n = notifier({ format: 'slack' });
    n.notify(approval);
    await n.idle();
    const body = JSON.parse(hits[0]!.body) as { text: string; blocks: Array<Record<string, any>> };
    expect(hits[0]!.headers['webhook-signature']).toBeUndefined();
    expect(body.text).toContain('ticket-writer');
    expect(body.text).toContain('tickets:write');
    expect(body.blocks[0]).toEqual({ type: 'header', text: { type: 'plain_text', text: 'Leash: approval requested' } });
    expect(body.blocks[1]!.fields.map((f: { type: string }) => f.type)).toEqual(Array(6).fill('mrkdwn'));
    const justification = body.blocks[2]!.text.text as string;
    expect(justification).toBe('*Justification*\n>close &lt;!channel&gt; duplicates &amp; merge');
    expect(JSON.stringify(body)).not.toContain('<!channel>');
    expect(body.blocks.at(-1)!.type).toBe('context');
    expect(slackPayload({ ...approval, chain: ['root', 'ticket-writer'] }, 'https://l').blocks).toHaveLength(5);
  });

  it('retries with backoff until a 2xx', async () => {
    statuses.push(500, 503);
    const n = notifier({ max_attempts: 3 });
    n.notify(approval);
    await n.idle();
    expect(hits).toHaveLength(3);
    expect(new Set(hits.map((h) => h.body)).size).toBe(1);
    expect(audit).toEqual([]);
  });

  it('gives up after max_attempts and audits approval.notify_failed without the URL', async () => {
    statuses.push(500, 500, 500, 500);
    const n = notifier({ max_attempts: 2 });
    n.notify(approval);
    await n.idle();
    expect(hits).toHaveLength(2);
    expect(audit).toEqual([{ type: 'approval.notify_failed', event: { approval: approval.id, plugin: 'ticket-writer', attempts: 2, error: 'HTTP 500' } }]);
    expect(JSON.stringify(audit)).not.toContain('SECRET-IN-URL');
  });

  it('an unreachable webhook is audited too; notify() itself never throws or blocks', async () => {
    url = 'http://127.0.0.1:1/hook';
    const n = notifier({ max_attempts: 2 });
    expect(n.notify(approval)).toBeUndefined();
    await n.idle();
    expect(audit).toHaveLength(1);
    expect(audit[0]!.event).toMatchObject({ attempts: 2, error: expect.any(String) });
  });

  it('refuses to send unsigned when secret_env names an unset variable', async () => {
    const n = notifier({ secret_env: 'MISSING_SECRET' }, {});
    n.notify(approval);
    await n.idle();
    expect(hits).toHaveLength(0);
    expect(audit[0]).toMatchObject({ type: 'approval.notify_failed', event: { attempts: 0 } });
  });

  it('no webhook configured: nothing is sent', async () => {
    const n = createWebhookNotifier({ webhook: () => undefined, issuer: () => 'https://l', audit: { record: async () => undefined } });
    n.notify(approval);
    await n.idle();
    expect(hits).toHaveLength(0);
  });
});

describe('step-up', () => {
  const nowS = Math.floor(NOW / 1000);
  const compiled = (g: Partial<GrantConfig>) => compilePolicy(config([plugin('p', { grants: [grant(g)] })])).plugins.get('p')!.grants[0]!;
  const id = (iat: number | undefined) => ({ ...identity('system:serviceaccount:plugins:p'), issuedAt: iat });
  const codeOf = (fn: () => void): string => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      return err instanceof LeashError ? err.code : String(err);
    }
  };
  const run = (g: Partial<GrantConfig>, over: { iat?: number | undefined; dpop?: boolean; justification?: string } = {}) =>
    codeOf(() => checkStepUp(compiled(g), { identity: id('iat' in over ? over.iat : nowS), dpopPresent: over.dpop ?? false, justification: over.justification, now: NOW }));

  it('is a no-op for grants without step_up whose approval is not step-up', () => {
    expect(run({ approval: 'none' }, { iat: undefined })).toBe('ok');
    expect(run({ approval: 'human' }, { iat: nowS - 100000 })).toBe('ok');
  });

  it('approval step-up without step_up: justification and a 300 s attestation age', () => {
    expect(DEFAULT_STEP_UP).toEqual({ max_attestation_age: 300, dpop: false, justification: true });
    expect(run({ approval: 'step-up' })).toBe('ERR_STEP_UP_JUSTIFICATION');
    expect(run({ approval: 'step-up' }, { justification: 'why' })).toBe('ok');
    expect(run({ approval: 'step-up' }, { justification: 'why', iat: nowS - 300 })).toBe('ok');
    expect(run({ approval: 'step-up' }, { justification: 'why', iat: nowS - 301 })).toBe('ERR_STEP_UP_ATTESTATION_AGE');
  });

  it('each option on its own', () => {
    expect(run({ step_up: { max_attestation_age: 60, dpop: false, justification: false } }, { iat: nowS - 61 })).toBe('ERR_STEP_UP_ATTESTATION_AGE');
    expect(run({ step_up: { max_attestation_age: 60, dpop: false, justification: false } }, { iat: nowS - 60 })).toBe('ok');
    // no iat: freshness cannot be shown (fail closed)
    expect(run({ step_up: { max_attestation_age: 60, dpop: false, justification: false } }, { iat: undefined })).toBe('ERR_STEP_UP_ATTESTATION_AGE');
    expect(run({ step_up: { dpop: true, justification: false } })).toBe('ERR_DPOP_REQUIRED');
    expect(run({ step_up: { dpop: true, justification: false } }, { dpop: true })).toBe('ok');
    expect(run({ step_up: { dpop: false, justification: true } })).toBe('ERR_STEP_UP_JUSTIFICATION');
    expect(run({ step_up: { dpop: false, justification: true } }, { justification: 'ticket 42' })).toBe('ok');
  });

  it('step_up on a human grant applies before the approval step', () => {
    expect(run({ approval: 'human', step_up: { dpop: false, justification: true } })).toBe('ERR_STEP_UP_JUSTIFICATION');
  });
});
