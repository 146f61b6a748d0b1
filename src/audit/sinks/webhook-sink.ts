import { createHash, randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { SinkItem, SinkTransport } from './sink-runner.js';

/**
 * A Standard Webhooks signer (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, so a receiver can
 * refuse a delivery that was altered, replayed (same id) or is old (timestamp tolerance).
 * A `whsec_`-prefixed base64 secret is used as the spec writes it; any other string is
 * taken as raw key bytes.
 */
export function standardWebhookSigner(secret: string): (id: string, body: string, at: Date) => Record<string, string> {
  const wh = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(Buffer.from(secret, 'utf8').toString('base64'));
  return (id, body, at) => ({
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': wh.sign(id, at, body),
  });
}

export interface WebhookSinkOptions {
  readonly url: string;
  readonly secret: string;
  readonly timeoutMs: number;
  readonly now?: () => Date;
}

/**
 * POSTs batches `{"events": [ ... ]}` signed with Standard Webhooks. The message id is a
 * digest of the body, so a batch retried after a failure carries the same id (receivers
 * drop duplicates by it); every event also carries its own seq or uid.
 */
export function createWebhookSink(opts: WebhookSinkOptions): SinkTransport {
  const sign = standardWebhookSigner(opts.secret);
  const now = opts.now ?? (() => new Date());
  return {
    async send(items: readonly SinkItem[]): Promise<void> {
      const body = `{"events":[${items.map((i) => i.payload).join(',')}]}`;
      const id = `msg_${createHash('sha256').update(body).digest('base64url').slice(0, 32)}`;
      const res = await fetch(opts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'leash-audit-sink', ...sign(id, body, now()) },
        body,
        signal: AbortSignal.timeout(opts.timeoutMs),
        redirect: 'error',
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
    async close() {},
  };
}

/** A fresh message id (approval notices: one per notice, kept across its retries). */
export function messageId(): string {
  return `msg_${randomUUID().replace(/-/g, '')}`;
}
