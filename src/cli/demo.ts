import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { loadConfigFile } from '../config/load.js';
import { Broker } from '../broker.js';
import { bindListeners } from '../http/listener.js';
import { LeashPluginClient, createLeashVerifier, createUsageReporter, requireLeashToken } from '../client/index.js';
import type { CliIo, Invocation } from './command-spec.js';
import { renderText } from '../review/formats/text.js';
import type { ReviewReport } from '../review/review.js';

/** Demo files, all git-ignored: the fake cluster's private key and its public JWKS. */
export const DEMO_CONFIG = 'config/demo.yaml';
const CLUSTER_KEY = '.leash/demo-cluster.private.jwk.json';
const CLUSTER_JWKS = 'config/demo-cluster.jwks.json';
const CLUSTER_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const ORCHESTRATOR_KEY = 'demo-orchestrator-key';
const OPS_KEY = 'demo-ops-key';
const CRM_API_SECRET = 'demo-crm-api-secret';
const CRM_API = 'https://crm.example.com/api';

/** The demo stands in for a Kubernetes cluster: a key that signs service-account tokens. */
async function demoClusterKey(): Promise<{ privateJwk: JWK }> {
  let privateJwk: JWK;
  try {
    privateJwk = JSON.parse(await readFile(CLUSTER_KEY, 'utf8')) as JWK;
  } catch {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    privateJwk = { ...(await exportJWK(privateKey)), kid: 'demo-cluster-1', alg: 'RS256' };
    await mkdir(dirname(CLUSTER_KEY), { recursive: true, mode: 0o700 });
    await writeFile(CLUSTER_KEY, JSON.stringify(privateJwk), { mode: 0o600 });
  }
  // Always rewrite the public half, so the policy's JWKS file can never drift from the key.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = privateJwk;
  await writeFile(CLUSTER_JWKS, `${JSON.stringify({ keys: [{ ...publicJwk, use: 'sig' }] }, null, 2)}\n`);
  return { privateJwk };
}

/** Said whenever the demo policy is served: its admin keys are in the docs, so anyone may call its admin API. */
export const DEMO_NOTICE =
  'DEMO ONLY: serving the demo policy config/demo.yaml, whose admin API keys are public (demo-orchestrator-key, demo-ops-key) and whose "cluster" key was made on this machine. Never expose this broker beyond your laptop; serve your own policy with --config <file>.';

/** Everything the demo policy needs on disk (the stand-in cluster's keys); returns the policy's path. */
export async function prepareDemo(): Promise<string> {
  await demoClusterKey();
  return DEMO_CONFIG;
}

/** A projected service-account token as the kubelet would mount it (audience `leash`). */
export async function mintDemoToken(opts: { serviceAccount: string; namespace: string; ttlSeconds?: number }): Promise<string> {
  const { privateJwk } = await demoClusterKey();
  const key = await importJWK(privateJwk, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    'kubernetes.io': {
      namespace: opts.namespace,
      serviceaccount: { name: opts.serviceAccount, uid: randomUUID() },
      pod: { name: `${opts.serviceAccount}-7d9f8c6b5-x2x4q`, uid: randomUUID() },
    },
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'demo-cluster-1' })
    .setIssuer(CLUSTER_ISSUER)
    .setSubject(`system:serviceaccount:${opts.namespace}:${opts.serviceAccount}`)
    .setAudience('leash')
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (opts.ttlSeconds ?? 3600))
    .sign(key);
}

function decode(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

/**
 * The quickstart: start Leash on embedded defaults (local keys, SQLite, demo policy),
 * then play the three roles (orchestrator, plugin, resource server) against it over HTTP.
 */
export async function runDemo(inv: Invocation, io: CliIo): Promise<number> {
  const say = (s = '') => io.out(`${s}\n`);
  let loaded = await loadConfigFile(await prepareDemo());
  const portGiven = inv.port('port');
  // Ports first: one in use stops the demo before it creates keys or records anything.
  const listeners = await bindListeners(loaded.config.settings, { port: portGiven ?? loaded.config.settings.listen.port, managementPort: inv.port('management-port') });
  if (portGiven !== undefined) {
    // The issuer names the port; the demo's follows --port (the one bound, when --port 0 let the system choose).
    const { settings } = loaded.config;
    const port = Number(new URL(listeners.public!.url).port);
    loaded = { ...loaded, config: { ...loaded.config, settings: { ...settings, issuer: `http://127.0.0.1:${port}`, listen: { ...settings.listen, port } } } };
  }
  const broker = await Broker.create(loaded, { write: () => undefined, auditWrite: () => undefined, defaultMetrics: false, listeners });
  const base = listeners.public!.url;
  const issuer = broker.config.settings.issuer;
  let api: Server | undefined;
  try {
    say(DEMO_NOTICE);
    say(`Leash is serving on ${base} (issuer ${issuer}), keys in ${resolve(broker.config.settings.keys.dir)}, state in ${broker.config.settings.store.path}`);
    say(`Health, readiness and metrics: ${listeners.management.url}/healthz, /readyz, /metrics (management port, loopback)`);
    say();
    say('1. The orchestrator opens a task that lets the crm-reader plugin in, for 15 minutes:');
    const taskRes = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'], ttl_seconds: 900, attributes: { ticket: 'SUP-1234' } }),
    });
    const task = (await taskRes.json()) as { id: string };
    if (taskRes.status !== 201) throw new Error(`opening the task failed: ${JSON.stringify(task)}`);
    say(`   POST /tasks -> ${taskRes.status} ${JSON.stringify(task)}`);
    say();

    say('2. The plugin pod reads its projected service-account token (signed by the demo cluster):');
    const saToken = await mintDemoToken({ serviceAccount: 'crm-reader', namespace: 'plugins' });
    say(`   sub=${String(decode(saToken).sub)} aud=leash (token ${saToken.slice(0, 24)}...)`);
    say();

    say(`3. The plugin exchanges it (RFC 8693) for a token bound to ${CRM_API} and the task:`);
    const plugin = new LeashPluginClient({ issuer: base, clientId: 'crm-reader', attestation: { token: () => saToken } });
    const token = await plugin.getToken({ audience: CRM_API, task: task.id });
    const claims = decode(token.accessToken);
    say(`   token_type=${token.tokenType} scope="${token.scope.join(' ')}" expires_in=${Math.round((token.expiresAt - Date.now()) / 1000)}s`);
    say(`   claims: ${JSON.stringify(claims)}`);
    say();

    say("4. The CRM API verifies it against Leash's JWKS (issuer, audience, scope, task), and reports the call:");
    const verifier = createLeashVerifier({ issuer, audience: CRM_API, jwksUri: `${base}/jwks` });
    const usage = createUsageReporter({ issuer: base, clientId: 'crm-api', clientSecret: CRM_API_SECRET });
    const crm = express();
    crm.get('/contacts', requireLeashToken(verifier, { requiredScopes: ['contacts:read'], usage }), (req, res) => {
      res.json({ contacts: ['Ada Lovelace', 'Alan Turing'], served_to: req.leash });
    });
    api = createServer(crm);
    await new Promise<void>((r) => api!.listen(0, '127.0.0.1', () => r()));
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/contacts`;
    const ok = await fetch(apiUrl, { headers: { authorization: `Bearer ${token.accessToken}` } });
    say(`   GET /contacts with the token -> ${ok.status} ${JSON.stringify(await ok.json())}`);
    const denied = await plugin.getToken({ audience: CRM_API, task: task.id, scope: ['contacts:delete'] }).then(
      () => 'issued (unexpected!)',
      (e: { error?: string; error_description?: string }) => `${e.error}: ${e.error_description}`,
    );
    say(`   asking for contacts:delete instead -> refused, ${denied}`);
    say();

    say("5. The CRM API's usage reporter sends the call to Leash (POST /usage, batched, in the background):");
    await fetch(apiUrl, { headers: { authorization: `Bearer ${token.accessToken}` } });
    await usage.flush();
    await broker.usage.idle();
    say(`   reporter: ${JSON.stringify(usage.stats())}`);
    say();

    say("6. A security admin reads the task's timeline (GET /admin/tasks/{id}/timeline, or `leash task show`):");
    const timeline = await fetch(`${base}/admin/tasks/${task.id}/timeline?format=text`, { headers: { authorization: `Bearer ${OPS_KEY}` } });
    for (const line of (await timeline.text()).trimEnd().split('\n')) say(`   ${line}`);
    say(`   the same as a page with a swim lane per plugin: ${base}/admin/tasks/${task.id}/timeline?format=html (Authorization: Bearer ${OPS_KEY})`);
    say();

    say('7. The security team reviews the policy and what just happened (GET /admin/review, role security):');
    const reviewRes = await fetch(`${base}/admin/review`, { headers: { authorization: `Bearer ${OPS_KEY}` } });
    if (reviewRes.status !== 200) throw new Error(`the review failed: ${reviewRes.status} ${await reviewRes.text()}`);
    say(
      renderText((await reviewRes.json()) as ReviewReport)
        .replace(/^/gm, '   ')
        .trimEnd(),
    );
    say('   (the same from the command line: npm run leash -- review --config config/demo.yaml --store config; see docs/review.md)');
    say('   In a browser, the security console shows the approvals inbox (live), tasks and their timelines, plugins with the');
    say('   kill switch, these findings and the keys, for people signed in with your OIDC provider (settings.console; off in');
    say('   this demo, which has no identity provider): see docs/console.md.');
    say();

    say('Try it yourself while this runs (Ctrl-C stops it):');
    say(
      `   TASK=$(curl -s -X POST ${base}/tasks -H 'authorization: Bearer ${ORCHESTRATOR_KEY}' -H 'content-type: application/json' -d '{"plugins":["crm-reader"]}' | sed 's/.*"id":"\\([^"]*\\)".*/\\1/')`,
    );
    say(`   SA=$(npm run -s leash -- demo token --sa crm-reader)`);
    say(`   curl -s ${base}/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d client_id=crm-reader \\`);
    say(`        -d subject_token_type=urn:ietf:params:oauth:token-type:jwt -d subject_token=$SA -d resource=${CRM_API} -d task=$TASK`);
    say(`   curl -s ${base}/jwks`);
    if (inv.has('no-serve')) return 0;
    await new Promise<void>((r) => {
      process.once('SIGINT', () => r());
      process.once('SIGTERM', () => r());
    });
    return 0;
  } finally {
    if (api) await new Promise<void>((r) => api!.close(() => r()));
    await broker.close();
  }
}

/** `leash demo token`: a service-account token the demo policy accepts, for trying the exchange by hand. */
export async function demoTokenCommand(inv: Invocation, io: CliIo): Promise<number> {
  io.out(`${await mintDemoToken({ serviceAccount: inv.string('sa') ?? 'crm-reader', namespace: inv.string('namespace') ?? 'plugins' })}\n`);
  return 0;
}
