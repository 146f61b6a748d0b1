import { join } from 'node:path';
import type { AuditSinkConfig } from '../../config/schema.js';
import type { AuditRecord } from '../../store/records.js';
import { formatAuditLine } from '../recorder.js';
import { apiActivity, auditToOcsf, type UsageFacts } from './ocsf.js';
import { createFileSink } from './file-sink.js';
import { SinkRunner, type SinkItem, type SinkTransport } from './sink-runner.js';
import { createSyslogSink } from './syslog-sink.js';
import { createWebhookSink } from './webhook-sink.js';

export interface AuditSinksDeps {
  readonly env?: NodeJS.ProcessEnv;
  readonly onOutcome?: (sink: string, outcome: 'delivered' | 'failed' | 'dropped', n: number) => void;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** First retry delay of a failing sink (tests shorten it). */
  readonly retryBaseMs?: number;
}

/** The configured audit sinks, fed by the recorder (every security event) and, for those that ask, by usage ingestion. */
export interface AuditSinks {
  /** The AuditRecorder listener. */
  readonly onRecord: (record: AuditRecord) => void;
  /** Usage records, for sinks with `include_usage`. */
  readonly onUsage: (usage: readonly (UsageFacts & { readonly at: number })[]) => void;
  readonly wantsUsage: boolean;
  backlogs(): Array<readonly [string, number]>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

const WARNING = new Set(['token.shared', 'token.used_after_revocation', 'token.used_outside_task', 'token.audience_mismatch', 'usage.route_drift', 'task.budget_exceeded', 'key.revoked']);
const NOTICE = /\.(denied|failed|overflow|reload_failed)$|^token\.revoked$|^plugin\.suspended$/;

function severityOf(type: string): SinkItem['severity'] {
  return WARNING.has(type) ? 4 : NOTICE.test(type) ? 5 : 6;
}

/** A kind's own fields, with their defaults (config/semantic.ts checked they are there and belong). */
function transportOf(c: AuditSinkConfig, env: NodeJS.ProcessEnv): SinkTransport {
  const need = <T>(v: T | undefined, field: string): T => {
    if (v === undefined) throw new Error(`audit sink '${c.name}': ${field} is required for a ${c.kind} sink`);
    return v;
  };
  switch (c.kind) {
    case 'file':
      return createFileSink({ path: need(c.path, 'path'), maxBytes: c.max_bytes ?? 104_857_600, maxFiles: c.max_files ?? 5 });
    case 'webhook': {
      const name = need(c.secret_env, 'secret_env');
      const secret = env[name];
      // Never unsigned: a receiver would have to trust whatever reaches its URL.
      if (!secret) throw new Error(`audit sink '${c.name}': environment variable ${name} (its signing secret) is not set`);
      return createWebhookSink({ url: need(c.url, 'url'), secret, timeoutMs: c.timeout_ms ?? 5000 });
    }
    case 'syslog':
      return createSyslogSink({
        host: need(c.host, 'host'),
        port: c.port ?? 6514,
        tls: c.tls ?? true,
        caFile: c.ca_file,
        facility: c.facility ?? 10,
        appName: c.app_name ?? 'leash',
        timeoutMs: c.timeout_ms ?? 5000,
      });
  }
}

/** Builds every configured sink; throws (at start) when one cannot be (a missing secret). */
export function createAuditSinks(configs: readonly AuditSinkConfig[], deps: AuditSinksDeps = {}): AuditSinks {
  const env = deps.env ?? process.env;
  const names = new Set<string>();
  const sinks = configs.map((c) => {
    if (names.has(c.name)) throw new Error(`audit sink name '${c.name}' is used twice`);
    names.add(c.name);
    const runner = new SinkRunner(transportOf(c, env), {
      name: c.name,
      backlogDir: join(c.backlog_dir, c.name),
      maxBacklogBytes: c.max_backlog_bytes,
      batchSize: c.batch_size,
      ...(deps.retryBaseMs !== undefined ? { retryBaseMs: deps.retryBaseMs } : {}),
      onOutcome: (outcome, n) => deps.onOutcome?.(c.name, outcome, n),
      log: deps.log,
    });
    return { config: c, runner };
  });
  return {
    wantsUsage: sinks.some((s) => s.config.include_usage),
    onRecord(record) {
      let native: string | undefined;
      let ocsf: string | undefined;
      for (const { config, runner } of sinks) {
        const payload = config.format === 'ocsf' ? (ocsf ??= JSON.stringify(auditToOcsf(record))) : (native ??= formatAuditLine(record).trimEnd());
        runner.enqueue({ payload, type: record.type, severity: severityOf(record.type) });
      }
    },
    onUsage(usage) {
      for (const { config, runner } of sinks) {
        if (!config.include_usage) continue;
        for (const u of usage) {
          const payload = config.format === 'ocsf' ? JSON.stringify(apiActivity(u.at, u)) : JSON.stringify({ ts: u.at, type: 'usage', ...u });
          runner.enqueue({ payload, type: 'usage', severity: u.outcome === 'ok' ? 6 : 5 });
        }
      }
    },
    backlogs: () => sinks.map(({ runner }) => [runner.name, runner.backlog()] as const),
    async flush() {
      await Promise.all(sinks.map(({ runner }) => runner.flush()));
    },
    async close() {
      await Promise.all(sinks.map(({ runner }) => runner.close()));
    },
  };
}
