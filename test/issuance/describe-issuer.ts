import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { CredentialKind, GrantConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import type { CredentialIssuer, IssueRequest } from '../../src/issuance/credential-issuer.js';
import type { CompiledGrant, CompiledPlugin } from '../../src/policy/types.js';
import type { Task } from '../../src/store/records.js';

/** What the shared suite needs of one credential kind. */
export interface IssuerHarness {
  /** The issuer under test, built through the registry (src/issuance/registry.ts). */
  readonly issuer: CredentialIssuer;
  /** The kind-specific part of a grant (`aws`, `vault`), merged into the grant config. */
  readonly grant: Partial<GrantConfig>;
  /** The current time the issuer sees, ms since the epoch. */
  readonly now: () => number;
  /** The secret values in an answer: none may appear in its record. */
  readonly secrets: (body: Record<string, unknown>) => string[];
  /** Makes the kind's backend unreachable; returns how to bring it back. Absent when the kind has none (jwt signs locally). */
  readonly breakBackend?: () => Promise<() => Promise<void>>;
  readonly close: () => Promise<void>;
}

const TASK_ID = 'tsk_Q29uZm9ybWFuY2VUYXNrMDE';
const PLUGIN = 'conformance-plugin';

/** An IssueRequest for a grant of `kind`, as the exchange pipeline builds one. */
export function issueRequest(kind: CredentialKind, harness: IssuerHarness, opts: { ttl?: number; task?: boolean; audience?: string } = {}): IssueRequest {
  const audience = opts.audience ?? `${kind === 'jwt' ? 'https://api.example.com' : `${kind}:conformance`}`;
  const config = {
    audience,
    scopes: ['data:read'],
    kind,
    effect: 'read',
    max_ttl: 300,
    task_required: opts.task !== false,
    outlive_attestation: false,
    dpop: 'optional',
    approval: 'none',
    conditions: [],
    ...harness.grant,
  } as GrantConfig;
  const grant: CompiledGrant = {
    index: 0,
    audience,
    scopes: new Set(['data:read']),
    defaultScopes: ['data:read'],
    kind,
    effect: 'read',
    maxTtl: 300,
    taskRequired: opts.task !== false,
    dpopRequired: false,
    approval: 'none',
    failedConditions: () => [],
    exceptions: [],
    config,
  };
  const plugin: CompiledPlugin = {
    id: PLUGIN,
    owner: 'team@example.com',
    risk: 'low',
    disabled: false,
    grants: [grant],
    config: { id: PLUGIN, owner: 'team@example.com', risk: 'low', disabled: false, bindings: [{ issuer: 'c', subject: 's' }], grants: [config] } as CompiledPlugin['config'],
  };
  const now = harness.now();
  const task: Task | undefined =
    opts.task === false
      ? undefined
      : {
          id: TASK_ID,
          plugins: [PLUGIN],
          attributes: {},
          createdAt: now,
          expiresAt: now + 3_600_000,
          createdBy: 'apikey:orchestrator',
          state: 'active',
          endedAt: undefined,
          endedBy: undefined,
        };
  return {
    plugin,
    grant,
    identity: { issuer: 'c', subject: 's', claims: {} } as unknown as IssueRequest['identity'],
    task,
    audience,
    scopes: ['data:read'],
    ttl: opts.ttl ?? 300,
    jkt: undefined,
    now,
  };
}

/**
 * The contract every CredentialIssuer keeps, whatever it issues (SPIRE's shared plugin
 * tests): an RFC 8693 answer whose `expires_in` is the credential's life, a record that
 * names it by a unique jti and holds none of its secrets, the grant's lifetime as an upper
 * bound, and a backend outage as a LeashError that carries none of the backend's text.
 */
export function describeIssuer(kind: CredentialKind, setup: () => Promise<IssuerHarness>): void {
  describe(`CredentialIssuer conformance: ${kind}`, () => {
    let h: IssuerHarness;
    beforeAll(async () => {
      h = await setup();
    });
    afterAll(async () => h.close());

    it("is the registry's issuer for its kind", () => {
      expect(h.issuer.kind).toBe(kind);
    });

    it("answers an RFC 8693 token response whose expires_in is the credential's life, and records it under the same kind", async () => {
      const req = issueRequest(kind, h);
      const { body, record } = await h.issuer.issue(req);
      expect(typeof body.access_token).toBe('string');
      expect(body.access_token.length).toBeGreaterThan(0);
      expect(body.issued_token_type).toMatch(/^urn:/);
      expect(typeof body.token_type).toBe('string');
      expect(Number.isInteger(body.expires_in)).toBe(true);
      expect(body.expires_in).toBeGreaterThan(0);
      if (body.scope !== undefined) expect(body.scope).toBe('data:read');
      expect(record).toMatchObject({ plugin: PLUGIN, task: TASK_ID, audience: req.audience, kind });
      expect(record.jti.length).toBeGreaterThan(0);
      expect([...record.scopes]).toEqual(['data:read']);
      // The record's expiry and the answer's expires_in describe the same instant (to the second).
      expect(Math.abs(record.expiresAt - (h.now() + body.expires_in * 1000))).toBeLessThanOrEqual(2000);
    });

    it('never records a secret of the credential', async () => {
      const { body, record } = await h.issuer.issue(issueRequest(kind, h));
      const stored = JSON.stringify(record);
      const secrets = h.secrets(body as Record<string, unknown>);
      expect(secrets.length).toBeGreaterThan(0);
      for (const s of secrets) expect(stored).not.toContain(s);
    });

    it('names every credential by its own jti', async () => {
      const jtis = new Set<string>();
      for (let i = 0; i < 3; i++) jtis.add((await h.issuer.issue(issueRequest(kind, h))).record.jti);
      expect(jtis.size).toBe(3);
    });

    it('issues without a task when the grant does not require one', async () => {
      const { record } = await h.issuer.issue(issueRequest(kind, h, { task: false }));
      expect(record.task).toBeUndefined();
    });

    it('a credential that is withheld can be discarded, once or twice, without throwing', async () => {
      const issued = await h.issuer.issue(issueRequest(kind, h));
      if (!issued.discard) return;
      await expect(issued.discard()).resolves.toBeUndefined();
      await expect(issued.discard()).resolves.toBeUndefined();
    });

    it("a backend that cannot be reached is a LeashError that carries none of the backend's text", async () => {
      if (!h.breakBackend) return;
      const restore = await h.breakBackend();
      try {
        const err = await h.issuer.issue(issueRequest(kind, h)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(LeashError);
        const visible = JSON.stringify({ code: (err as LeashError).code, description: (err as LeashError).description });
        expect(visible).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|ServiceUnavailable|injected/);
      } finally {
        await restore();
      }
      // And it issues again once the backend is back.
      expect((await h.issuer.issue(issueRequest(kind, h))).body.access_token.length).toBeGreaterThan(0);
    });
  });
}
