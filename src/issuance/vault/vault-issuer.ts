import { LeashError } from '../../errors/leash-error.js';
import type { LeaseStore } from '../../store/store.js';
import type { Clock } from '../../time/clock.js';
import type { DynamicSecret, VaultClient } from '../../vault/vault-client.js';
import type { CredentialIssuer, IssueRequest, IssuedCredential } from '../credential-issuer.js';
import { TOKEN_TYPE_VAULT_SECRET } from '../../formats/token-types.js';
import { vaultFailure, vaultLeashError } from './vault-errors.js';
import { randomId } from '../../formats/random-id.js';

export interface VaultIssuerDeps {
  /** Leash's Vault session client (the session renews the token underneath). */
  readonly vault: () => VaultClient;
  readonly leases: LeaseStore;
  readonly clock: Clock;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The `vault_secret` member of the token response. */
export interface VaultSecretBody {
  /** The secret exactly as Vault's engine returned it (`username`/`password`, `certificate`/`private_key`, ...). */
  readonly data: Readonly<Record<string, unknown>>;
  /** Seconds until Leash revokes the lease (equals `expires_in`). */
  readonly lease_duration: number;
  /** Always false: the lease belongs to Leash, the plugin cannot renew it. */
  readonly renewable: false;
}

/** `vault:` + 128 random bits: the credential's id, and the opaque handle the client gets as `access_token`. */
function newJti(): string {
  return `vault:${randomId()}`;
}

/**
 * `vault` credentials: a Vault dynamic secret (database user, AWS key, certificate) from the
 * grant's path, issued with Leash's own Vault token. The lease is recorded before the secret
 * leaves, so it is revoked when the task ends, the plugin is suspended, or the grant's TTL
 * passes; a secret whose lease cannot be recorded is revoked at once and not handed out.
 *
 * `access_token` is an opaque handle (the jti), never the secret: the secret goes in
 * `vault_secret.data`, so nothing that logs access tokens logs a password.
 */
export function createVaultIssuer(deps: VaultIssuerDeps): CredentialIssuer {
  async function fetchSecret(req: IssueRequest): Promise<DynamicSecret> {
    const g = req.grant.config.vault;
    if (!g) throw new TypeError(`vault issuer: grant for ${req.audience} has no vault settings (config validation should have refused it)`);
    try {
      return await deps.vault().issueSecret(g.path, g.method, g.method === 'write' ? g.params : {});
    } catch (err) {
      // No retry: issuing is not idempotent, and a lost answer would leak a second lease.
      throw vaultLeashError(err);
    }
  }

  /** Best effort: a lease Leash cannot keep track of must not outlive this request. */
  async function revokeNow(leaseId: string, why: string): Promise<void> {
    try {
      await deps.vault().revokeLease(leaseId);
    } catch (err) {
      deps.log?.('vault: could not revoke an untracked lease; Vault expires it at its own TTL', { why, ...vaultFailure(err) });
    }
  }

  return {
    kind: 'vault',
    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const secret = await fetchSecret(req);
      if (secret.leaseId === '') {
        // E.g. a PKI role without generate_lease: Leash could not revoke it with the task.
        throw new LeashError(
          'ERR_UPSTREAM_TARGET_INVALID',
          "Vault issued this grant's secret without a lease, which Leash cannot revoke; the Vault role must issue leased secrets (PKI: generate_lease=true)",
          { vault_reason: 'no_lease', vault_status: undefined },
        );
      }
      // Vault revokes it itself at lease_duration; Leash revokes it at the grant's TTL, whichever is first.
      const expiresIn = secret.leaseDuration > 0 ? Math.min(req.ttl, secret.leaseDuration) : req.ttl;
      const jti = newJti();
      const expiresAt = req.now + expiresIn * 1000;
      try {
        await deps.leases.recordLease({ jti, leaseId: secret.leaseId, plugin: req.plugin.id, task: req.task?.id, expiresAt, revokedAt: undefined });
      } catch (err) {
        await revokeNow(secret.leaseId, 'lease not recorded');
        throw err instanceof LeashError ? err : new LeashError('ERR_BACKEND_UNAVAILABLE', "the store cannot record the secret's lease; retry later", undefined, { cause: err });
      }
      const vault_secret: VaultSecretBody = { data: secret.data, lease_duration: expiresIn, renewable: false };
      return {
        body: {
          access_token: jti,
          issued_token_type: TOKEN_TYPE_VAULT_SECRET,
          token_type: 'N_A',
          expires_in: expiresIn,
          vault_secret,
        },
        // No secret data here: this record is stored, listed and audited.
        record: {
          jti,
          plugin: req.plugin.id,
          task: req.task?.id,
          audience: req.audience,
          scopes: [...req.scopes],
          kind: 'vault',
          kid: undefined,
          issuedAt: req.now,
          expiresAt,
          // A Vault secret cannot be sender-constrained.
          jkt: undefined,
        },
        // The secret was withheld (index or audit write failed): its lease must not live on.
        discard: async () => {
          await revokeNow(secret.leaseId, 'credential withheld');
          await deps.leases.markLeaseRevoked(jti, deps.clock.now()).catch(() => false);
        },
      };
    },
  };
}
