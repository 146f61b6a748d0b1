import { afterAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, testConfigInput } from '../support/broker.js';

const leash = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000 });

describe('leash audit verify', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('reports an intact chain, then names the first record someone changed', async () => {
    const tb = await startTestBroker();
    dirs.push(tb.dir);
    const task = await tb.openTask();
    await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    const configPath = join(tb.dir, 'leash.json');
    await writeFile(configPath, JSON.stringify(testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster })));
    await tb.close({ keepDir: true });

    const ok = leash(['audit', 'verify', '--config', configPath]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/audit chain intact: \d+ events/);

    // an insider edits a denial into an issuance, directly in the database
    const db = new Database(join(tb.dir, 'leash.db'));
    const row = db.prepare("SELECT seq FROM audit WHERE type = 'exchange.issued' ORDER BY seq LIMIT 1").get() as { seq: number };
    db.prepare('UPDATE audit SET event = replace(event, \'"decision":"issued"\', \'"decision":"denied"\') WHERE seq = ?').run(row.seq);
    db.close();

    const broken = leash(['audit', 'verify', '--config', configPath]);
    expect(broken.status).toBe(1);
    expect(broken.stderr).toContain(`BROKEN at seq ${row.seq}`);
  }, 90000);
});
