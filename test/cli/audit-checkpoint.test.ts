import { afterAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';

const leash = (args: string[], input?: string) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000, input });
const RUN_REDIS = redisAvailable('audit checkpoints on Redis');

/** Without blocking this process: the broker the CLI reads the JWKS from runs in it. */
function leashAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
}

/**
 * A cut-off tail of the audit chain, caught by the signed checkpoints Leash writes into the
 * audit stream: the shipped JSON lines keep the newest checkpoint out of the truncater's
 * reach, and `leash audit verify --checkpoint` holds the store to it.
 */
describe('leash audit verify --checkpoint: a truncated tail', () => {
  const dirs: string[] = [];
  const redises: RedisServer[] = [];
  afterAll(async () => {
    for (const r of redises) await r.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** A broker writing a checkpoint every 5 events to its audit lines, and 13 events. */
  async function brokerWithHistory(store?: Record<string, unknown>): Promise<{ tb: TestBroker; lines: string[]; config: string }> {
    const lines: string[] = [];
    const tb = await startTestBroker({
      patch: (cfg) => {
        cfg.settings.audit = { stdout: true, checkpoint_every_events: 5, checkpoint_interval_ms: 600000 };
        if (store) cfg.settings.store = store;
      },
      broker: { auditWrite: (l) => void lines.push(l) },
    });
    dirs.push(tb.dir);
    for (let i = 0; i < 12; i++) await tb.openTask();
    await tb.broker.checkpointAudit();
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Record<string, any>;
    if (store) input.settings.store = store;
    const config = join(tb.dir, 'leash.json');
    await writeFile(config, JSON.stringify(input));
    return { tb, lines, config };
  }

  /** The newest checkpoint's head seq in the shipped lines. */
  function newestCheckpoint(lines: string[]): number {
    const heads = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.type === 'audit.checkpoint')
      .map((l) => l.head_seq as number);
    expect(heads.length).toBeGreaterThanOrEqual(2);
    return Math.max(...heads);
  }

  it('SQLite: an intact chain agrees with the newest checkpoint; with its tail deleted it is reported cut off (lines from a file or stdin)', async () => {
    const { tb, lines, config } = await brokerWithHistory();
    const jwks = join(tb.dir, 'jwks.json');
    await writeFile(jwks, await (await fetch(`${tb.url}/jwks`)).text());
    await tb.close({ keepDir: true });
    const shipped = join(tb.dir, 'audit.jsonl');
    await writeFile(shipped, lines.join(''));
    const head = newestCheckpoint(lines);

    const ok = leash(['audit', 'verify', '--config', config, '--checkpoint', shipped, '--jwks', jwks]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`audit chain intact: \\d+ events .*; agrees with checkpoint seq ${head} of epoch `));

    // an insider deletes the last rows: what remains is still a valid chain
    const db = new Database(join(tb.dir, 'leash.db'));
    const cut = db.prepare('DELETE FROM audit WHERE seq > ?').run(head - 3).changes;
    db.close();
    expect(cut).toBeGreaterThanOrEqual(3);
    const blind = leash(['audit', 'verify', '--config', config]);
    expect(blind.status).toBe(0);
    expect(blind.stderr).toMatch(/no checkpoint given: records cut off the end of the chain would not show/);

    const caught = leash(['audit', 'verify', '--config', config, '--checkpoint', shipped, '--jwks', jwks]);
    expect(caught.status).toBe(1);
    expect(caught.stderr).toContain(`audit chain BROKEN at seq ${head - 2}: the log ends at seq ${head - 3} but the known head is seq ${head}: records were cut off`);

    const piped = leash(['audit', 'verify', '--config', config, '--checkpoint', '-', '--jwks', jwks], lines.join(''));
    expect(piped.status).toBe(1);
    expect(piped.stderr).toContain('records were cut off');

    // a checkpoint forged into the shipped lines is tampering, not a newer truth
    const forged = JSON.parse(lines.find((l) => l.includes('"audit.checkpoint"'))!) as Record<string, any>;
    const payload = JSON.parse(Buffer.from(forged.jws.payload, 'base64url').toString());
    forged.jws.payload = Buffer.from(JSON.stringify({ ...payload, seq: 2, iat: payload.iat + 1000 })).toString('base64url');
    await writeFile(shipped, `${lines.join('')}${JSON.stringify(forged)}\n`);
    const tampered = leash(['audit', 'verify', '--config', config, '--checkpoint', shipped, '--jwks', jwks]);
    expect(tampered.status).toBe(1);
    expect(tampered.stderr).toMatch(/audit checkpoint INVALID: the checkpoint does not verify/);
  }, 120000);

  (RUN_REDIS ? it : it.skip)(
    'Redis: the same, with the head key rewritten to match the cut (the JWKS read from the running broker)',
    async () => {
      const redis = await startRedis();
      redises.push(redis);
      const { tb, lines, config } = await brokerWithHistory({ kind: 'redis', url: redis.url, key_prefix: 'cp:' });
      try {
        const head = newestCheckpoint(lines);
        // the checkpoint as an operator would copy it from one line
        const line = lines.map((l) => JSON.parse(l) as Record<string, any>).find((l) => l.type === 'audit.checkpoint' && l.head_seq === head)!;
        const compact = `${line.jws.protected}.${line.jws.payload}.${line.jws.signature}`;
        const ok = await leashAsync(['audit', 'verify', '--config', config, '--checkpoint', compact]);
        expect(ok.stderr).toBe('');
        expect(ok.status).toBe(0);
        expect(ok.stdout).toContain(`agrees with checkpoint seq ${head}`);

        const raw = new Redis(redis.url);
        try {
          const keep = head - 2;
          const last = JSON.parse((await raw.hget('cp:audit:log', String(keep)))!) as [number, string, string, string, string];
          const all = await raw.hkeys('cp:audit:log');
          const gone = all.filter((seq) => Number(seq) > keep);
          expect(gone.length).toBeGreaterThanOrEqual(2);
          await raw.hdel('cp:audit:log', ...gone);
          await raw.set('cp:audit:head', `${keep}:${last[4]}`);
        } finally {
          raw.disconnect();
        }
        expect(leash(['audit', 'verify', '--config', config]).status).toBe(0);
        const caught = await leashAsync(['audit', 'verify', '--config', config, '--checkpoint', compact]);
        expect(caught.status).toBe(1);
        expect(caught.stderr).toContain(`the log ends at seq ${head - 2} but the known head is seq ${head}: records were cut off`);
      } finally {
        await tb.close({ keepDir: true });
      }
    },
    120000,
  );
});
