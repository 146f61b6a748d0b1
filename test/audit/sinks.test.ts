import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { Webhook } from 'standardwebhooks';
import type { AuditRecord } from '../../src/store/records.js';
import { createAuditSinks } from '../../src/audit/sinks/sinks.js';
import { SinkRunner, type SinkItem } from '../../src/audit/sinks/sink-runner.js';
import { octetFrame } from '../../src/audit/sinks/syslog-sink.js';
import type { AuditSinkConfig } from '../../src/config/schema.js';
import { freePort } from '../support/net.js';
import { testTls } from '../support/x509.js';

const rec = (seq: number, type = 'exchange.issued', event: Record<string, unknown> = { plugin: 'crm-reader', jti: `j${seq}`, scopes: ['a'] }): AuditRecord => ({
  seq,
  ts: 1_764_072_000_000 + seq,
  type,
  event,
  prevHash: 'p'.repeat(64),
  hash: 'h'.repeat(64),
});
const sink = (over: Partial<AuditSinkConfig> & Pick<AuditSinkConfig, 'kind'>, dir: string): AuditSinkConfig =>
  ({ name: 'test', format: 'native', include_usage: false, backlog_dir: join(dir, 'backlog'), max_backlog_bytes: 1 << 20, batch_size: 10, ...over }) as AuditSinkConfig;

async function until(pred: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('audit sinks', () => {
  let dir: string;
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    rmSync(dir, { recursive: true, force: true });
  });
  const fresh = () => (dir = mkdtempSync(join(tmpdir(), 'leash-sinks-')));

  it('file: one JSON line per event, rotated by size, at most max_files kept, mode 0600', async () => {
    fresh();
    const path = join(dir, 'out', 'audit.log');
    const outcomes: string[] = [];
    const sinks = createAuditSinks([sink({ kind: 'file', path, max_bytes: 4096, max_files: 2 }, dir)], { onOutcome: (_s, o, n) => outcomes.push(`${o}:${n}`) });
    cleanups.push(() => sinks.close());
    for (let i = 1; i <= 120; i++) sinks.onRecord(rec(i));
    await sinks.flush();
    const files = readdirSync(join(dir, 'out')).sort();
    expect(files).toEqual(['audit.log', 'audit.log.1', 'audit.log.2']);
    for (const f of files) {
      expect(statSync(join(dir, 'out', f)).size).toBeLessThanOrEqual(4096);
      expect(statSync(join(dir, 'out', f)).mode & 0o777).toBe(0o600);
    }
    const last = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; type: string; hash: string });
    expect(last.at(-1)).toMatchObject({ seq: 120, type: 'exchange.issued', hash: 'h'.repeat(64) });
    // The newest lines are in the file, the oldest rotated out (max_files bounds the disk).
    const kept = files
      .flatMap((f) =>
        readFileSync(join(dir, 'out', f), 'utf8')
          .trim()
          .split('\n'),
      )
      .map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(Math.max(...kept)).toBe(120);
    expect(kept.length).toBeLessThan(120);
    expect(outcomes.every((o) => o.startsWith('delivered'))).toBe(true);
  });

  it('webhook: Standard Webhooks-signed batches; a receiver killed mid-run loses nothing once it returns (backlog on disk)', async () => {
    fresh();
    const secret = 'whsec_' + Buffer.from('a-32-byte-secret-for-the-tests!!').toString('base64');
    const port = await freePort();
    const received = new Map<number, number>();
    const deliveries: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
    let server: Server | undefined;
    const startReceiver = async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          deliveries.push({ headers: req.headers, body });
          for (const e of (JSON.parse(body) as { events: Array<{ seq: number }> }).events) received.set(e.seq, (received.get(e.seq) ?? 0) + 1);
          res.statusCode = 204;
          res.end();
        });
      });
      await new Promise<void>((r) => server!.listen(port, '127.0.0.1', () => r()));
    };
    const stopReceiver = async () => {
      server!.closeAllConnections();
      await new Promise<void>((r) => server!.close(() => r()));
    };
    await startReceiver();
    const outcomes = { delivered: 0, failed: 0, dropped: 0 };
    const sinks = createAuditSinks([sink({ kind: 'webhook', url: `http://127.0.0.1:${port}/leash`, secret_env: 'SINK_SECRET', timeout_ms: 1000 }, dir)], {
      env: { SINK_SECRET: secret },
      retryBaseMs: 20,
      onOutcome: (_s, o, n) => (outcomes[o] += n),
    });
    cleanups.push(() => sinks.close());
    for (let i = 1; i <= 30; i++) sinks.onRecord(rec(i));
    await sinks.flush();
    expect(received.size).toBe(30);

    await stopReceiver();
    for (let i = 31; i <= 80; i++) sinks.onRecord(rec(i));
    await until(() => outcomes.failed > 0, 5000, 'a failed delivery');
    // Every event the receiver missed waits on disk, and enqueueing never waited.
    await until(() => sinks.backlogs()[0]![1] === 50, 5000, 'backlog of 50');
    expect(
      readFileSync(join(dir, 'backlog', 'test', 'backlog.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(50);

    await startReceiver();
    cleanups.push(stopReceiver);
    await until(() => received.size === 80, 15_000, 'all 80 events received');
    expect([...received.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    await until(() => sinks.backlogs()[0]![1] === 0, 5000, 'backlog drained');
    expect(outcomes.dropped).toBe(0);

    // Every delivery verifies with a Standard Webhooks library; a replay outside the tolerance does not.
    const wh = new Webhook(secret);
    for (const d of deliveries) expect(() => wh.verify(d.body, d.headers as Record<string, string>)).not.toThrow();
    const d0 = deliveries[0]!;
    expect(d0.headers['webhook-id']).toMatch(/^msg_/);
    expect(() => wh.verify(d0.body, { ...(d0.headers as Record<string, string>), 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600) })).toThrow();
  }, 40_000);

  it('the backlog survives a restart and is bounded (oldest dropped, counted)', async () => {
    fresh();
    const sent: string[] = [];
    let fail = true;
    const transport = {
      send: async (items: readonly SinkItem[]) => {
        if (fail) throw new Error('down');
        sent.push(...items.map((i) => i.payload));
      },
      close: async () => undefined,
    };
    const counts: Record<string, number> = {};
    const opts = { name: 's', backlogDir: join(dir, 'b'), maxBacklogBytes: 100_000, batchSize: 50, retryBaseMs: 10_000, onOutcome: (o: string, n: number) => (counts[o] = (counts[o] ?? 0) + n) };
    const first = new SinkRunner(transport, opts);
    for (let i = 0; i < 20; i++) first.enqueue({ payload: `{"seq":${i}}`, type: 't', severity: 6 });
    await first.flush();
    await first.close();
    expect(first.backlog()).toBe(20);
    fail = false;
    const second = new SinkRunner(transport, opts);
    await until(() => second.backlog() === 0 && sent.length === 20, 5000, 'the old backlog delivered');
    expect(sent).toEqual(Array.from({ length: 20 }, (_, i) => `{"seq":${i}}`));
    await second.close();

    fail = true;
    const small = new SinkRunner(transport, { ...opts, backlogDir: join(dir, 'c'), maxBacklogBytes: 65536 });
    const big = 'x'.repeat(1000);
    for (let i = 0; i < 200; i++) small.enqueue({ payload: `{"seq":${i},"pad":"${big}"}`, type: 't', severity: 6 });
    await small.flush();
    await until(() => (counts.dropped ?? 0) > 0, 5000, 'drops');
    expect(statSync(join(dir, 'c', 'backlog.jsonl')).size).toBeLessThanOrEqual(65536);
    expect(small.backlog() + counts.dropped!).toBe(200);
    await small.close();
  });

  for (const tls of [false, true]) {
    it(`syslog over ${tls ? 'TLS (RFC 5425)' : 'TCP (RFC 6587)'}: RFC 5424 messages in octet-counted frames`, async () => {
      fresh();
      const frames: string[] = [];
      let buf = Buffer.alloc(0);
      const onSocket = (s: Socket) =>
        s.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          for (;;) {
            const sp = buf.indexOf(0x20);
            if (sp < 0) break;
            const len = Number(buf.subarray(0, sp).toString('ascii'));
            if (buf.length < sp + 1 + len) break;
            frames.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
            buf = buf.subarray(sp + 1 + len);
          }
        });
      const certs = testTls();
      const server: TcpServer = tls ? createTlsServer({ cert: certs.cert, key: certs.key }, onSocket) : createTcpServer(onSocket);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
      const port = (server.address() as { port: number }).port;
      let caFile: string | undefined;
      if (tls) {
        caFile = join(dir, 'ca.pem');
        writeFileSync(caFile, certs.ca);
      }
      const sinks = createAuditSinks([
        sink({ kind: 'syslog', format: 'ocsf', host: tls ? 'localhost' : '127.0.0.1', port, tls, ...(caFile ? { ca_file: caFile } : {}), facility: 10, app_name: 'leash' }, dir),
      ]);
      cleanups.push(() => sinks.close());
      sinks.onRecord(rec(1));
      sinks.onRecord(rec(2, 'token.shared', { jti: 'j', plugin: 'p', task: 't', cause: 'address' }));
      await sinks.flush();
      await until(() => frames.length === 2, 5000, 'two frames');
      const m = /^<(\d+)>1 (\S+) (\S+) leash (\d+) (\S+) - \uFEFF(.*)$/s.exec(frames[0]!);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBe(10 * 8 + 6);
      expect(Number.isNaN(Date.parse(m![2]!))).toBe(false);
      expect(m![5]).toBe('exchange.issued');
      expect(JSON.parse(m![6]!)).toMatchObject({ class_uid: 3003, unmapped: { leash: { seq: 1 } } });
      // An anomaly is a warning (severity 4) and a Detection Finding.
      expect(frames[1]).toMatch(/^<84>1 .* token\.shared - /);
      expect(JSON.parse(frames[1]!.slice(frames[1]!.indexOf('\uFEFF') + 1))).toMatchObject({ class_uid: 2004 });
    });
  }

  it('frames are octet counted in bytes, not characters', () => {
    expect(octetFrame('é').toString('utf8')).toBe('2 é');
  });

  it('a webhook sink without its secret refuses to start (never unsigned)', () => {
    fresh();
    expect(() => createAuditSinks([sink({ kind: 'webhook', url: 'https://siem.example.com', secret_env: 'NOT_SET_ANYWHERE' }, dir)], { env: {} })).toThrow(/NOT_SET_ANYWHERE/);
  });
});
