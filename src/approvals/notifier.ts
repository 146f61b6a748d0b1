import { backoffDelay } from '../client/backoff.js';
import type { AuditSink } from '../audit/recorder.js';
import { standardWebhookSigner } from '../audit/sinks/webhook-sink.js';
import type { ApprovalSettingsConfig } from '../config/schema.js';
import type { ApprovalRecord } from '../store/records.js';

export type WebhookConfig = NonNullable<ApprovalSettingsConfig['webhook']>;

/** Tells approvers a request waits for them. Never blocks the exchange; never throws. */
export interface ApprovalNotifier {
  notify(approval: ApprovalRecord): void;
}

export interface WebhookNotifierDeps {
  /** Read at each notice, so a policy reload applies to the next one; undefined: no webhook. */
  readonly webhook: () => WebhookConfig | undefined;
  /** Leash's issuer URL, for the approve/deny links. */
  readonly issuer: () => string;
  readonly audit: AuditSink;
  readonly env?: NodeJS.ProcessEnv;
  /** First retry delay; doubled per attempt, with equal jitter (default 500 ms). */
  readonly backoffMs?: number;
  /** Per-delivery timeout (default 5 s). */
  readonly timeoutMs?: number;
}

export interface WebhookNotifier extends ApprovalNotifier {
  /** Resolves when every notice in flight has been delivered or given up (tests, shutdown). */
  idle(): Promise<void>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Leash's own notice document (`format: json`). No token, no request hash, nothing secret. */
export function jsonPayload(a: ApprovalRecord, issuer: string): Record<string, unknown> {
  const base = `${issuer}/admin/approvals/${a.id}`;
  return {
    type: 'approval.requested',
    approval_id: a.id,
    plugin: a.plugin,
    owner: a.owner,
    risk: a.risk,
    task: a.task ?? null,
    audience: a.audience,
    scopes: a.scopes,
    ttl: a.ttl,
    kind: a.kind,
    effect: a.effect,
    justification: a.justification ?? null,
    chain: a.chain ?? null,
    cause: a.cause,
    requested_at: iso(a.requestedAt),
    expires_at: iso(a.expiresAt),
    links: { self: base, approve: `${base}/approve`, deny: `${base}/deny` },
  };
}

/** Slack mrkdwn treats `&`, `<`, `>` as markup (links, mentions): requester text must not. */
const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A Slack incoming-webhook payload (`format: slack`): `text` fallback plus Block Kit `blocks`. */
export function slackPayload(a: ApprovalRecord, issuer: string): Record<string, unknown> {
  const e = slackEscape;
  const base = `${issuer}/admin/approvals/${a.id}`;
  const fields = [
    `*Plugin*\n\`${e(a.plugin)}\` (risk ${e(a.risk)})`,
    `*Owner*\n${e(a.owner)}`,
    `*Audience*\n${e(a.audience)}`,
    `*Scopes*\n${a.scopes.map((s) => `\`${e(s)}\``).join(' ')}`,
    `*Task*\n${a.task === undefined ? '(none)' : `\`${e(a.task)}\``}`,
    `*Kind / effect / TTL*\n${e(a.kind)} / ${e(a.effect)} / ${a.ttl}s`,
  ];
  const blocks: Record<string, unknown>[] = [
    { type: 'header', text: { type: 'plain_text', text: 'Leash: approval requested' } },
    { type: 'section', fields: fields.map((text) => ({ type: 'mrkdwn', text })) },
    { type: 'section', text: { type: 'mrkdwn', text: `*Justification*\n${a.justification === undefined ? '(none given)' : `>${e(a.justification)}`}` } },
  ];
  if (a.chain !== undefined) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*Delegation chain*\n${a.chain.map((p) => `\`${e(p)}\``).join(' → ')}` } });
  blocks.push({
    type: 'context',
    elements: [{ type: 'mrkdwn', text: `Approval \`${a.id}\` expires ${iso(a.expiresAt)}. Decide with POST ${base}/approve or ${base}/deny (role security or an approver group).` }],
  });
  return {
    text: `Leash approval requested: ${e(a.plugin)} wants ${a.scopes.map(e).join(' ')} at ${e(a.audience)} (${e(a.effect)}, risk ${e(a.risk)}). Approval ${a.id}.`,
    blocks,
  };
}

/**
 * POSTs each new pending approval to the configured webhook, with retries and exponential
 * backoff, fire-and-forget. A notice that cannot be delivered is audited as
 * `approval.notify_failed` (the approval stays pending and listed in the admin API). The
 * URL is never audited: Slack-style webhook URLs are themselves secrets.
 */
/** Longest wait between two deliveries of one notice. */
const MAX_BACKOFF_MS = 30_000;

export function createWebhookNotifier(deps: WebhookNotifierDeps): WebhookNotifier {
  const inFlight = new Set<Promise<void>>();
  const env = deps.env ?? process.env;
  const backoff = deps.backoffMs ?? 500;
  const timeout = deps.timeoutMs ?? 5000;

  async function deliver(cfg: WebhookConfig, approval: ApprovalRecord): Promise<void> {
    const payload = cfg.format === 'slack' ? slackPayload(approval, deps.issuer()) : jsonPayload(approval, deps.issuer());
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'leash-approvals' };
    let sign: ((id: string, body: string, at: Date) => Record<string, string>) | undefined;
    if (cfg.secret_env !== undefined) {
      const secret = env[cfg.secret_env];
      // Never send unsigned when signing is configured: the receiver would have to trust it blindly.
      if (!secret) {
        await deps.audit.record('approval.notify_failed', { approval: approval.id, plugin: approval.plugin, attempts: 0, error: `secret_env ${cfg.secret_env} is not set` });
        return;
      }
      sign = standardWebhookSigner(secret);
    }
    // One id per notice, the same on every retry: a receiver drops a replay or a duplicate by it.
    const messageId = `msg_${approval.id}`;
    const attempts = cfg.max_attempts ?? 3;
    let last = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        // Signed per attempt: the timestamp is when it was sent (Standard Webhooks).
        const signed = sign ? { ...headers, ...sign(messageId, body, new Date()) } : headers;
        const res = await fetch(cfg.url, { method: 'POST', headers: signed, body, signal: AbortSignal.timeout(timeout), redirect: 'error' });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        // The error's class only: a message could quote the URL.
        last = (err as Error)?.name ?? 'Error';
      }
      if (attempt < attempts) await new Promise((r) => setTimeout(r, backoffDelay(attempt, { baseMs: backoff, capMs: MAX_BACKOFF_MS, random: Math.random })));
    }
    await deps.audit.record('approval.notify_failed', { approval: approval.id, plugin: approval.plugin, attempts, error: last });
  }

  return {
    notify(approval) {
      const cfg = deps.webhook();
      if (!cfg) return;
      const p = deliver(cfg, approval)
        .catch(() => undefined)
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    async idle() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}
