/**
 * The governance review at scale: a 1,000-plugin policy and a store of 1,000,000 audit
 * events (30 days of exchanges, denials and approvals). Measures `leash review` as the CLI
 * and `GET /admin/review` run it: open the store, aggregate the history, run every rule,
 * render. The goal (issue 12): under 10 s. A benchmark script, not a timed test.
 *
 *   npm run bench:review -- [--plugins 1000] [--events 1000000] [--keep]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GENESIS_HASH, canonicalJson, chainHashCanonical } from '../src/audit/chain.js';
import { parseConfig } from '../src/config/load.js';
import { compilePolicy } from '../src/policy/compile.js';
import { issuanceEvidence } from '../src/review/evidence.js';
import { renderHtml } from '../src/review/formats/report-docs.js';
import { renderSarif } from '../src/review/formats/sarif.js';
import { runReview } from '../src/review/review.js';
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js';

const DAY = 86_400_000;
const log = (msg: string) => process.stderr.write(`${msg}\n`);

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

/** A deterministic generator, so every run reviews the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const EFFECTS = ['read', 'read', 'read', 'read-sensitive', 'write', 'exfiltrate'] as const;

function policy(plugins: number, rand: () => number) {
  const list = Array.from({ length: plugins }, (_, i) => {
    const team = `team-${i % 200}`;
    const grants = Array.from({ length: 2 }, (_, g) => {
      const effect = EFFECTS[Math.floor(rand() * EFFECTS.length)]!;
      const api = `https://api-${(i * 7 + g * 13) % 150}.example.com`;
      return {
        audience: api,
        scopes: Array.from({ length: 2 + Math.floor(rand() * 3) }, (_, s) => `${api.slice(8, 14)}:${effect}-${s}`),
        effect,
        max_ttl: effect === 'read' ? 600 : 120,
        ...(effect === 'write' || effect === 'exfiltrate' ? { approval: 'human' } : {}),
      };
    });
    // Same audience twice in one plugin is not allowed: keep the first.
    const unique = grants.filter((g, k) => grants.findIndex((x) => x.audience === g.audience) === k);
    return {
      id: `plugin-${i}`,
      owner: `${team}@example.com`,
      risk: (['low', 'medium', 'high'] as const)[i % 3],
      delegate_to: rand() < 0.3 ? [`plugin-${(i + 1 + Math.floor(rand() * 5)) % plugins}`] : [],
      bindings: [{ issuer: 'cluster', subject: `system:serviceaccount:ns-${i % 50}:plugin-${i}` }],
      grants: unique,
    };
  });
  return {
    version: 1,
    settings: { issuer: 'https://leash.example.com', store: { path: './leash.db' } },
    trusted_issuers: [{ name: 'cluster', kind: 'kubernetes', issuer: 'https://k8s.example.com', audience: 'leash', jwks: { file: 'cluster.jwks.json' } }],
    plugins: list,
  };
}

async function main(): Promise<void> {
  const pluginCount = option('plugins', 1000);
  const eventCount = option('events', 1_000_000);
  const rand = rng(12);
  const dir = await mkdtemp(join(tmpdir(), 'leash-bench-review-'));
  const dbPath = join(dir, 'leash.db');
  try {
    const input = policy(pluginCount, rand);
    const config = parseConfig(input, { baseDir: dir, guardrailMode: 'report' });
    compilePolicy(config);

    // ---- setup (not measured): the schema through the store, then a bulk insert of a valid hash chain
    await openSqliteStore({ path: dbPath }).close();
    const t0 = Date.now();
    const db = new Database(dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF');
    const insert = db.prepare('INSERT INTO audit (seq, ts, type, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
    const now = Date.now();
    const start = now - 30 * DAY;
    let prev = GENESIS_HASH;
    const reasons = ['ERR_SCOPE_NOT_GRANTED', 'ERR_TASK_EXPIRED', 'ERR_QUOTA_EXCEEDED', 'ERR_ATTESTATION_EXPIRED'];
    const write = db.transaction((from: number, to: number) => {
      for (let seq = from; seq <= to; seq++) {
        const ts = start + Math.floor(((seq - 1) / eventCount) * 30 * DAY);
        // Some plugins stay unused, some grants and scopes too: the use rules have work to do.
        const p = input.plugins[Math.floor(rand() * pluginCount * 0.95)]!;
        const grant = p.grants[rand() < 0.9 ? 0 : p.grants.length - 1]!;
        const r = rand();
        let type: string;
        let event: Record<string, unknown>;
        if (r < 0.85) {
          type = 'exchange.issued';
          event = {
            decision: 'issued',
            reason: 'OK',
            plugin: p.id,
            client_id: p.id,
            audience: grant.audience,
            scopes: grant.scopes.slice(0, 1 + Math.floor(rand() * 2)),
            jti: `j${seq}`,
            kind: 'jwt',
            ttl: 120,
            task: `tsk_${Math.floor(seq / 20)}`,
          };
        } else if (r < 0.97) {
          type = 'exchange.denied';
          event = { decision: 'denied', reason: reasons[Math.floor(rand() * reasons.length)], plugin: p.id, client_id: p.id, audience: grant.audience, task: `tsk_${Math.floor(seq / 20)}` };
        } else {
          type = rand() < 0.6 ? 'approval.requested' : 'approval.approved';
          event = { approval: `apr_${seq}`, plugin: p.id, audience: grant.audience };
        }
        const canonical = canonicalJson(event);
        const hash = chainHashCanonical(prev, seq, ts, type, canonical);
        insert.run(seq, ts, type, canonical, prev, hash);
        prev = hash;
      }
    });
    for (let from = 1; from <= eventCount; from += 50_000) write(from, Math.min(eventCount, from + 49_999));
    db.close();
    log(`setup: ${pluginCount} plugins, ${eventCount} events written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // ---- measured: what `leash review --store` and GET /admin/review do. Run 1 is cold: the
    // store's first review folds its whole history into the per-day rollup. Run 2 is warm
    // (nothing new). Run 3 follows 10,000 new events (a day of a busy broker), folded then.
    const runs: { label: string; ms: number; phases: string }[] = [];
    let last: ReturnType<typeof runReview> | undefined;
    for (const label of ['cold (first review: folds 1M events)', 'warm (nothing new)', 'after 10,000 new events']) {
      if (label.startsWith('after')) {
        const extra = new Database(dbPath);
        const ins = extra.prepare('INSERT INTO audit (seq, ts, type, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
        extra.transaction(() => {
          for (let seq = eventCount + 1; seq <= eventCount + 10_000; seq++) {
            const canonical = canonicalJson({
              decision: 'issued',
              reason: 'OK',
              plugin: 'plugin-1',
              audience: input.plugins[1]!.grants[0]!.audience,
              scopes: input.plugins[1]!.grants[0]!.scopes.slice(0, 1),
            });
            const hash = chainHashCanonical(prev, seq, now - 1000, 'exchange.issued', canonical);
            ins.run(seq, now - 1000, 'exchange.issued', canonical, prev, hash);
            prev = hash;
          }
        })();
        extra.close();
      }
      const t0m = performance.now();
      const store = openSqliteStore({ path: dbPath });
      const t1 = performance.now();
      const use = await issuanceEvidence(store).collect({ since: now - 30 * DAY, until: now + 1 });
      const suspensions = await store.listSuspensions();
      const t2 = performance.now();
      last = runReview({ config, now, use, suspensions });
      const t3 = performance.now();
      renderSarif(last.report);
      renderHtml(last.report, last.graph);
      const t4 = performance.now();
      await store.close();
      runs.push({ label, ms: t4 - t0m, phases: `open ${(t1 - t0m).toFixed(0)} ms, history ${(t2 - t1).toFixed(0)} ms, rules ${(t3 - t2).toFixed(0)} ms, SARIF+HTML ${(t4 - t3).toFixed(0)} ms` });
    }
    const report = last!.report;
    log(
      `review: ${report.summary.total} findings (${Object.entries(report.summary)
        .filter(([k]) => k !== 'total')
        .map(([k, v]) => `${v} ${k}`)
        .join(', ')})`,
    );
    for (const r of runs) log(`  ${r.label}: ${(r.ms / 1000).toFixed(2)} s (${r.phases})`);
    const worst = Math.max(...runs.map((r) => r.ms));
    log(`slowest run ${(worst / 1000).toFixed(2)} s (goal: under 10 s) ${worst < 10_000 ? 'PASS' : 'FAIL'}`);
    process.exitCode = worst < 10_000 ? 0 : 1;
  } finally {
    if (!process.argv.includes('--keep')) await rm(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

await main();
