import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { ADMIN_ROLES } from '../../src/config/schema.js';
import { patched, problemsOf } from '../config/fixtures.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * The admin roles are exactly the ones some route checks: orchestrator (tasks), ops
 * (routine key operations), security (revocation, kill switch, approvals, emergency keys,
 * any task). There is no `platform` role: the platform team changes policy through the
 * config file in git, which needs no admin API call.
 */
describe('admin roles', () => {
  it('are orchestrator, ops and security', () => {
    expect([...ADMIN_ROLES]).toEqual(['orchestrator', 'ops', 'security']);
  });

  it("a config that gives a key the 'platform' role is refused, at the role's path", () => {
    const problems = problemsOf(
      patched((c) => {
        c.admin = { api_keys: [{ id: 'platform-team', sha256: 'a'.repeat(64), roles: ['platform'] }] };
      }),
    );
    expect(problems.map((p) => p.path)).toContain('/admin/api_keys/0/roles/0');
  });

  describe("an admin JWT that claims 'platform'", () => {
    let tb: TestBroker;
    let key: CryptoKey;
    const ISS = 'https://idp.example.com';
    beforeAll(async () => {
      const pair = await generateKeyPair('ES256');
      key = pair.privateKey;
      const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256' };
      tb = await startTestBroker({
        patch: (cfg) => {
          cfg.admin.issuers = [{ issuer: ISS, audience: 'leash-admin', jwks: { inline: { keys: [jwk] } }, algorithms: ['ES256'] }];
        },
      });
    });
    afterAll(async () => tb.close());

    it('holds no role: every admin route answers 403', async () => {
      const token = await new SignJWT({ roles: ['platform'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
        .setIssuer(ISS)
        .setAudience('leash-admin')
        .setSubject('platform-team')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(key);
      const auth = { authorization: `Bearer ${token}` };
      const json = { ...auth, 'content-type': 'application/json' };
      const calls: Array<[string, string, Record<string, string>, string?]> = [
        ['POST', '/tasks', json, JSON.stringify({ plugins: ['crm-reader'] })],
        ['GET', '/tasks/tsk_doesnotexist0000', auth],
        ['GET', '/admin/keys', auth],
        ['POST', '/admin/keys/rotate', json, '{}'],
        ['GET', '/admin/plugins/suspended', auth],
        ['POST', '/admin/revocations', json, JSON.stringify({ scope: 'plugin', id: 'crm-reader', reason: 'test' })],
        ['GET', '/admin/approvals', auth],
      ];
      for (const [method, path, headers, body] of calls) {
        const res = await fetch(`${tb.url}${path}`, { method, headers, ...(body ? { body } : {}) });
        expect([method, path, res.status]).toEqual([method, path, 403]);
      }
    });
  });
});
