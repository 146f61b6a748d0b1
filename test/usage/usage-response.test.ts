import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLeashVerifier, createUsageReporter, requireLeashToken } from '../../src/client/index.js';
import { listen } from '../client/fixtures.js';
import { CRM_RS_SECRET, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { validateOcsf } from '../support/ocsf.js';

/** `shared_token.response: revoke-and-suspend`, and usage records sent to a sink (`include_usage`, OCSF). */
describe('usage: the shared-token response suspends the plugin; usage records reach a sink as OCSF API Activity', () => {
  let tb: TestBroker;
  let sinkFile: string;
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    const tickets = await ticketsKey();
    tb = await startTestBroker({
      patch: withResourceServers(tickets, (cfg) => {
        sinkFile = join(cfg.settings.keys.dir, '..', 'usage-ocsf.log');
        cfg.settings.usage = { shared_token: { response: 'revoke-and-suspend' } };
        cfg.settings.audit = { stdout: false, sinks: [{ name: 'siem', kind: 'file', format: 'ocsf', include_usage: true, path: sinkFile, backlog_dir: join(cfg.settings.keys.dir, '..', 'backlog') }] };
      }),
    });
  });
  afterAll(async () => {
    for (const c of closers) await c();
    await tb.close();
  });

  const exchange = async (task: string) =>
    tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, scope: 'contacts:read', task });

  it('a second caller address: token revoked, plugin suspended (no new credentials), all audited; every usage record validates as OCSF', async () => {
    const reporter = createUsageReporter({ issuer: tb.url, clientId: 'crm-api', clientSecret: CRM_RS_SECRET, flushIntervalMs: 10 });
    closers.push(() => reporter.close());
    const app = express();
    app.set('trust proxy', true);
    app.get('/contacts/:id', requireLeashToken(createLeashVerifier({ issuer: tb.url, audience: CRM_API }), { usage: reporter }), (_req, res) => {
      res.json({ ok: true });
    });
    const srv = await listen(app);
    closers.push(srv.close);
    const task = await tb.openTask();
    const first = await exchange(task);
    expect(first.status).toBe(200);
    const token = first.body.access_token as string;
    for (const ip of ['198.51.100.7', '203.0.113.99']) {
      expect((await fetch(`${srv.url}/contacts/1`, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': ip } })).status).toBe(200);
      await reporter.flush();
    }
    await tb.broker.usage.idle();
    const again = await exchange(task);
    expect([again.status, again.body.error]).toEqual([400, 'unauthorized_client']);
    expect(String(again.body.error_description)).toMatch(/suspended/);
    const chain = await tb.broker.testing.store.read(1, 10_000);
    const types = chain.map((r) => r.type);
    expect(types).toEqual(expect.arrayContaining(['token.shared', 'token.revoked', 'plugin.suspended']));
    expect(chain.find((r) => r.type === 'token.shared')!.event).toMatchObject({ response: 'revoke-and-suspend', plugin: 'crm-reader' });
    expect(chain.find((r) => r.type === 'plugin.suspended')!.event).toMatchObject({ plugin: 'crm-reader', actor: 'system:usage' });

    await tb.broker.sinks.flush();
    const events = readFileSync(sinkFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) expect(validateOcsf(e)).toEqual([]);
    const usage = events.filter((e) => (e.unmapped as { leash: { type: string } }).leash.type === 'usage');
    expect(usage).toHaveLength(2);
    expect(usage[0]).toMatchObject({ class_uid: 6003, activity_id: 2, api: { operation: 'GET /contacts/:id', service: { name: 'crm-api' } }, src_endpoint: { ip: '198.51.100.7' } });
    expect(events.find((e) => e.class_uid === 2004)).toMatchObject({ finding_info: { types: ['token.shared'] } });
  });
});
