import type { CredentialKind } from '../config/schema.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { IssuedToken, Revocation, RevocationScope } from '../store/records.js';

/** What a revocation check needs to know about a Leash-issued token (from its verified claims). */
export interface TokenFacts {
  readonly jti: string;
  readonly plugin: string;
  readonly task: string | undefined;
  readonly kid: string | undefined;
  /** Seconds since epoch (`iat`). */
  readonly iat: number;
  /**
   * Delegated tokens: jtis of the upstream tokens (`chain_jti`). A token-scope revocation of
   * any of them covers this token too (the cascade).
   */
  readonly upstream?: readonly string[] | undefined;
  /**
   * Delegated tokens: the chain's other plugins (root and earlier actors). A plugin
   * revocation of any of them covers this token when it was issued at or before it.
   */
  readonly chainPlugins?: readonly string[] | undefined;
}

export interface RevokeOptions {
  /** Who: `apikey:<id>`, `jwt:<iss>#<sub>`, `plugin:<id>` (the holder), `system:<cause>`. */
  readonly actor: string;
  readonly reason: string;
  /**
   * The policy the tokens were issued under, when it is no longer the one in force (a reload
   * removed their grant): kinds that look up where a credential lives (the AWS role of a
   * grant) look there first.
   */
  readonly issuedUnder?: CompiledPolicy | undefined;
}

/** Which revocation a Revoker is running for. */
export interface RevokeContext {
  readonly scope: RevocationScope;
  /** The jti, task id or plugin id revoked. */
  readonly id: string;
  /** ms */
  readonly revokedAt: number;
}

/**
 * Per credential kind, what revoking means beyond the revocation list. For `jwt` the list
 * is all there is; a Vault lease is revoked in Vault, an AWS session denied through IAM.
 */
export interface Revoker {
  readonly kind: CredentialKind;
  revokeIssued(tokens: readonly IssuedToken[], opts: RevokeOptions, ctx?: RevokeContext): Promise<void>;
}

/**
 * The revocation list as every path that accepts a Leash token sees it: an in-memory view
 * kept in step with the store (pub/sub plus a periodic catch-up), and the operations that
 * add to it. Checks are synchronous and never touch the network; a view that cannot prove
 * it is fresh refuses (fail closed).
 */
export interface RevocationService {
  /** Throws LeashError ERR_BACKEND_UNAVAILABLE if the view is stale (store unreachable). */
  assertFresh(): void;
  /** Revoked by jti (its own or an upstream token's), task, plugin (issued at or before the plugin's revocation) or key. Calls assertFresh. */
  isRevoked(token: TokenFacts): boolean;
  /** Calls assertFresh. */
  isSuspended(plugin: string): boolean;
  revokeToken(jti: string, opts: RevokeOptions): Promise<Revocation>;
  /** Several tokens by jti (one record each), their kinds' revokers run once for all. */
  revokeTokens(jtis: readonly string[], opts: RevokeOptions): Promise<Revocation[]>;
  revokeTask(taskId: string, opts: RevokeOptions): Promise<Revocation>;
  revokePlugin(plugin: string, opts: RevokeOptions): Promise<Revocation>;
  revokeKey(kid: string, opts: RevokeOptions): Promise<Revocation>;
  /** Suspends (kill switch): revokes every live credential of the plugin and refuses new ones. */
  suspend(plugin: string, opts: RevokeOptions): Promise<{ changed: boolean }>;
  resume(plugin: string, opts: RevokeOptions): Promise<{ changed: boolean }>;
  /** Subscribe to revocations as they reach this replica (feeds, SSE). Returns an unsubscribe. */
  onRevocation(listener: (revocation: Revocation) => void): () => void;
}
