import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { CredentialKind } from '../config/schema.js';
import type { CompiledGrant, CompiledPlugin } from '../policy/types.js';
import type { IssuedToken, Task } from '../store/records.js';
import type { ActClaim } from './jwt/act-claim.js';
import type { ApprovalReceipt } from '../approvals/gate.js';

export interface IssueRequest {
  readonly plugin: CompiledPlugin;
  readonly grant: CompiledGrant;
  readonly identity: WorkloadIdentity;
  readonly task: Task | undefined;
  readonly audience: string;
  readonly scopes: readonly string[];
  /** Lifetime in seconds, already the minimum of every limit. */
  readonly ttl: number;
  /** DPoP key thumbprint when the token is sender-constrained. */
  readonly jkt: string | undefined;
  /** RFC 8705 `x5t#S256` when the token is bound to the client certificate it was exchanged with. */
  readonly x5t?: string | undefined;
  /** ms since epoch */
  readonly now: number;
  /** Set when issued through a delegation chain (RFC 8693 `act`). */
  readonly delegation?:
    | {
        readonly subject: string;
        readonly act: ActClaim;
        readonly effects: readonly string[];
        /** jtis of the upstream tokens, root's first (`chain_jti`). */
        readonly upstreamJtis: readonly string[];
        /** The chain is rooted at a person (`subject`), not at a plugin. */
        readonly personRooted?: boolean;
      }
    | undefined;
  /** Set when a human approved this exact request. */
  readonly approval?: ApprovalReceipt | undefined;
  /** The plugin acts for a person: `sub` is the person (`<issuer>#<sub>`), `act` the plugin (RFC 8693 §4.1). */
  readonly onBehalfOf?: { readonly subject: string; readonly act: ActClaim } | undefined;
  /** RFC 9396: what the token is for (one MCP tool call); in the token and the response (§7, §9.1). */
  readonly authorizationDetails?: readonly Readonly<Record<string, unknown>>[] | undefined;
}

/** RFC 8693 §2.2.1 response body. */
export interface TokenResponseBody {
  readonly access_token: string;
  readonly issued_token_type: string;
  readonly token_type: string;
  readonly expires_in: number;
  readonly scope?: string;
  readonly [extra: string]: unknown;
}

export interface IssuedCredential {
  readonly body: TokenResponseBody;
  readonly record: IssuedToken;
  /**
   * Undo what issuing did outside Leash, for a credential that will not be handed out
   * (its record or audit event could not be written). Best effort, never throws. Absent
   * when nothing needs undoing (a withheld JWT or AWS session was never seen by anyone).
   */
  readonly discard?: () => Promise<void>;
}

/** One issuer per credential kind (jwt, aws-sts, vault), registered by kind. */
export interface CredentialIssuer {
  readonly kind: CredentialKind;
  issue(request: IssueRequest): Promise<IssuedCredential>;
}
