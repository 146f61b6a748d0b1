import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createVaultClient, createVaultTransport } from '../../src/vault/node-vault-client.js';
import type { VaultClient } from '../../src/vault/vault-client.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';
import { describeVaultClient, expectNoSecret, rejection } from './describe-vault.js';

const clientFor = (c: VaultContract, token: string | undefined, extra: { namespace?: string; timeoutMs?: number } = {}): VaultClient =>
  createVaultClient({ address: c.url, timeoutMs: extra.timeoutMs ?? 3000, token: () => token, ...(extra.namespace ? { namespace: extra.namespace } : {}) });

describeVaultClient('the contract server', async () => {
  const c = await startVaultContract();
  const denied = c.createToken({ policies: ['default'], capabilities: {} });
  return {
    client: clientFor(c, c.rootToken),
    denied: clientFor(c, denied),
    tokens: [c.rootToken, denied],
    kvMount: 'secret',
    transitMount: 'transit',
    prefix: 'leash-test',
    close: () => c.close(),
  };
});

describe('VaultClient (contract server only)', () => {
  let c: VaultContract;
  let root: VaultClient;
  beforeAll(async () => {
    c = await startVaultContract({ leaseTtl: 600 });
    root = clientFor(c, c.rootToken);
  });
  afterAll(async () => {
    await c.close();
  });

  describe('dynamic secrets and leases', () => {
    it('reads database credentials with a lease and revokes the lease', async () => {
      const s = await root.issueSecret('database/creds/readonly', 'read', {});
      expect(s.leaseId).toMatch(/^database\/creds\/readonly\/\w+/);
      expect(s.leaseDuration).toBe(600);
      expect(s.renewable).toBe(true);
      expect(typeof s.data['username']).toBe('string');
      const stored = c.leases().find((l) => l.leaseId === s.leaseId)!;
      expect(stored.data).toEqual(s.data);
      expect(stored.revokedAt).toBeUndefined();
      await root.revokeLease(s.leaseId);
      expect(c.leases().find((l) => l.leaseId === s.leaseId)!.revokedAt).toBeDefined();
      expect(c.callsTo('sys/leases/revoke').at(-1)).toMatchObject({ method: 'PUT', status: 204 });
      // revoking again, or a lease Vault never knew, counts as revoked
      await root.revokeLease(s.leaseId);
      await root.revokeLease('database/creds/readonly/unknown');
    });

    it('the contract answers sys/leases/lookup for a live lease and 400 once revoked; sys/health tells sealed', async () => {
      const raw = createVaultTransport({ address: c.url, timeoutMs: 3000 });
      const s = await root.issueSecret('database/creds/lookup', 'read', {});
      const live = await raw.call('PUT', 'sys/leases/lookup', { lease_id: s.leaseId }, c.rootToken);
      expect(live?.['data']).toMatchObject({ id: s.leaseId, renewable: true });
      expect((live?.['data'] as { ttl: number }).ttl).toBeGreaterThan(590);
      await root.revokeLease(s.leaseId);
      await expect(raw.call('PUT', 'sys/leases/lookup', { lease_id: s.leaseId }, c.rootToken)).rejects.toMatchObject({ reason: 'invalid', status: 400 });
      expect(await raw.call('GET', 'sys/health')).toMatchObject({ initialized: true, sealed: false });
      c.seal();
      try {
        // node-vault hands back sys/health bodies whatever the status
        expect(await raw.call('GET', 'sys/health')).toMatchObject({ sealed: true });
      } finally {
        c.unseal();
      }
    });

    it('reads AWS credentials', async () => {
      const s = await root.issueSecret('aws/creds/deploy', 'read', {});
      expect(s.data).toMatchObject({ access_key: expect.stringMatching(/^AKIA/), secret_key: expect.any(String) });
    });

    it('issues a real PKI certificate for the common name, signed by the issuing CA, with its private key', async () => {
      const s = await root.issueSecret('pki/issue/plugins', 'write', { common_name: 'crm.plugins.internal' });
      expect(s.leaseId).toMatch(/^pki\/issue\/plugins\//);
      const cert = new X509Certificate(String(s.data['certificate']));
      const ca = new X509Certificate(String(s.data['issuing_ca']));
      expect(cert.subject).toBe('CN=crm.plugins.internal');
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(cert.checkIssued(ca)).toBe(true);
      const key = createPrivateKey(String(s.data['private_key']));
      expect(
        createPublicKey(key)
          .export({ type: 'spki', format: 'der' })
          .equals(cert.publicKey.export({ type: 'spki', format: 'der' })),
      ).toBe(true);
      expect(cert.checkPrivateKey(key)).toBe(true);
    });

    it('maps an unknown role to invalid (400) and a missing common_name to invalid', async () => {
      const strict = await startVaultContract({ roles: { database: ['readonly'] } });
      try {
        const err = await rejection(clientFor(strict, strict.rootToken).issueSecret('database/creds/admin', 'read', {}));
        expect(err).toMatchObject({ reason: 'invalid', status: 400 });
      } finally {
        await strict.close();
      }
      expect((await rejection(root.issueSecret('pki/issue/plugins', 'write', {}))).reason).toBe('invalid');
    });

    it('passes read params as a query and write params as the body', async () => {
      await root.issueSecret('aws/creds/deploy', 'read', { ttl: '15m' });
      expect(c.calls.at(-1)).toMatchObject({ method: 'GET', path: 'aws/creds/deploy' });
      await root.issueSecret('database/creds/rw', 'write', { ttl: '5m' });
      expect(c.calls.at(-1)).toMatchObject({ method: 'POST', path: 'database/creds/rw' });
    });
  });

  describe('failures map to reasons', () => {
    it('403 for an unknown token and for a revoked one', async () => {
      expect((await rejection(clientFor(c, 'hvs.not-a-token').lookupSelf())).reason).toBe('denied');
      const t = c.createToken();
      const client = clientFor(c, t);
      await client.lookupSelf();
      c.revokeToken(t);
      const err = await rejection(client.lookupSelf());
      expect(err.reason).toBe('denied');
      expectNoSecret(err, [t, c.rootToken]);
    });

    it('a token that lacks a capability is denied on that path only', async () => {
      const t = c.createToken({ capabilities: { 'secret/data/readable/*': ['read'] } });
      const client = clientFor(c, t);
      await root.kvWrite('secret', 'readable/one', { ok: true });
      expect(await client.kvRead('secret', 'readable/one')).toEqual({ data: { ok: true }, version: 1 });
      expect((await rejection(client.kvWrite('secret', 'readable/one', { ok: false }))).reason).toBe('denied');
      expect((await rejection(client.kvRead('secret', 'other'))).reason).toBe('denied');
    });

    it('never falls back to VAULT_TOKEN or VAULT_NAMESPACE from the environment', async () => {
      const saved = { token: process.env['VAULT_TOKEN'], ns: process.env['VAULT_NAMESPACE'] };
      process.env['VAULT_TOKEN'] = c.rootToken;
      process.env['VAULT_NAMESPACE'] = 'from-env';
      try {
        const err = await rejection(clientFor(c, undefined).lookupSelf());
        expect(err.reason).toBe('denied');
        expect(c.calls.at(-1)).toMatchObject({ authenticated: false, namespace: undefined });
      } finally {
        if (saved.token === undefined) delete process.env['VAULT_TOKEN'];
        else process.env['VAULT_TOKEN'] = saved.token;
        if (saved.ns === undefined) delete process.env['VAULT_NAMESPACE'];
        else process.env['VAULT_NAMESPACE'] = saved.ns;
      }
    });

    it('reads the token getter on every call', async () => {
      const a = c.createToken();
      const b = c.createToken();
      let current = a;
      const client = createVaultClient({ address: c.url, timeoutMs: 3000, token: () => current });
      await client.lookupSelf();
      c.revokeToken(a);
      current = b;
      await expect(client.lookupSelf()).resolves.toBeDefined();
    });

    it('sends X-Vault-Namespace when configured', async () => {
      await clientFor(c, c.rootToken, { namespace: 'team-a' }).lookupSelf();
      expect(c.calls.at(-1)).toMatchObject({ path: 'auth/token/lookup-self', namespace: 'team-a', authenticated: true });
    });

    it('400 invalid, 404 not_found, 500 server, 503 sealed', async () => {
      c.failNext('transit/sign/k/sha2-256', 400);
      expect(await rejection(root.transitSign('transit', 'k', 1, new Uint8Array([1]), 'ecdsa-p256'))).toMatchObject({ reason: 'invalid', status: 400 });
      c.failNext('transit/keys/k/rotate', 404);
      expect(await rejection(root.transitRotate('transit', 'k'))).toMatchObject({ reason: 'not_found', status: 404 });
      c.failNext('secret/data/x', 500);
      expect(await rejection(root.kvRead('secret', 'x'))).toMatchObject({ reason: 'server', status: 500 });
      c.failNext(/^sys\/leases\/revoke/, 503);
      expect(await rejection(root.revokeLease('database/creds/r/1'))).toMatchObject({ reason: 'sealed', status: 503 });
      // the fault is used up
      await root.revokeLease('database/creds/r/1');
    });

    it('a sealed Vault answers 503 sealed everywhere', async () => {
      c.seal();
      try {
        expect(await rejection(root.kvRead('secret', 'x'))).toMatchObject({ reason: 'sealed', status: 503 });
        expect(await rejection(root.lookupSelf())).toMatchObject({ reason: 'sealed' });
      } finally {
        c.unseal();
      }
      await root.lookupSelf();
    });

    it('unreachable when the listener is down, and fine again once it is back on the same port', async () => {
      const port = c.port;
      await c.down();
      try {
        const err = await rejection(root.kvRead('secret', 'x'));
        expect(err).toMatchObject({ reason: 'unreachable', status: 0 });
        expectNoSecret(err, [c.rootToken]);
      } finally {
        await c.up();
      }
      expect(c.port).toBe(port);
      await root.lookupSelf();
    });

    describe('against broken servers', () => {
      let hang: NetServer;
      let garbage: Server;
      const sockets = new Set<Socket>();
      let answer = '{}';
      beforeAll(async () => {
        hang = createNetServer((s) => {
          sockets.add(s);
          s.on('error', () => undefined);
        });
        garbage = createHttpServer((_req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(answer);
        });
        await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
        await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
      });
      afterAll(async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => hang.close(() => r()));
        garbage.closeAllConnections();
        await new Promise<void>((r) => garbage.close(() => r()));
      });

      it('a Vault that never answers times out as unreachable', async () => {
        const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
        const client = createVaultClient({ address: url, timeoutMs: 200, token: () => 'hvs.secret-token-value-000000' });
        const err = await rejection(client.lookupSelf());
        expect(err).toMatchObject({ reason: 'unreachable', status: 0 });
        expectNoSecret(err, ['hvs.secret-token-value-000000']);
      });

      it('answers of the wrong shape are malformed, never passed on', async () => {
        const url = `http://127.0.0.1:${(garbage.address() as AddressInfo).port}`;
        const client = createVaultClient({ address: url, timeoutMs: 1000, token: () => 't' });
        const cases: [string, () => Promise<unknown>][] = [
          ['{"data":{"data":"x","metadata":{"version":1}}}', () => client.kvRead('secret', 'a')],
          ['{"data":{"data":{},"metadata":{"version":-1}}}', () => client.kvRead('secret', 'a')],
          ['{"data":{"signature":"vault:v2:AAAA"}}', () => client.transitSign('transit', 'k', 1, new Uint8Array([1]), 'ecdsa-p256')],
          ['{"data":{"signature":"vault:v1:AAAA"}}', () => client.transitSign('transit', 'k', 1, new Uint8Array([1]), 'ecdsa-p256')],
          ['{"data":{"name":"k","type":"ecdsa-p256","latest_version":2,"keys":{"1":{"public_key":"x","creation_time":"2026-01-01T00:00:00Z"}}}}', () => client.transitReadKey('transit', 'k')],
          ['{"lease_id":"x","lease_duration":"60","renewable":true,"data":{}}', () => client.issueSecret('database/creds/r', 'read', {})],
          ['{"data":{"ttl":10,"renewable":true,"policies":"root"}}', () => client.lookupSelf()],
          ['{"data":{"secret/data/a":"read"}}', () => client.capabilities(['secret/data/a'])],
          ['[1,2]', () => client.lookupSelf()],
          ['not json', () => client.lookupSelf()],
        ];
        for (const [body, run] of cases) {
          answer = body;
          const err = await rejection(run());
          expect({ body, reason: err.reason }).toEqual({ body, reason: 'malformed' });
        }
      });
    });
  });

  it('logs calls without bodies, and signing uses sha2-256 + jws for ECDSA', async () => {
    await root.transitCreateKey('transit', 'calls', 'ecdsa-p256');
    await root.transitSign('transit', 'calls', 1, new Uint8Array([1, 2, 3]), 'ecdsa-p256');
    expect(c.calls.at(-1)).toEqual({ method: 'POST', path: 'transit/sign/calls/sha2-256', namespace: undefined, authenticated: true, status: 200 });
    expect(JSON.stringify(c.calls)).not.toContain(c.rootToken);
  });
});
