import type { LeashTokenClaims } from '../issuance/jwt/verify-leash-token.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { ActClaim } from '../issuance/jwt/act-claim.js';

/**
 * Delegation chains (RFC 8693 §1.1, §4.1): plugin B presents plugin A's Leash token as
 * `subject_token` and its own attestation as `actor_token`. Three steps of the exchange:
 * verifyUpstream (upstream.ts) → checkDelegationTarget (chain-rules.ts) → narrowForChain
 * (narrow.ts). See docs/delegation.md.
 */
export type { ActClaim } from '../issuance/jwt/act-claim.js';
export { verifyUpstream } from './upstream.js';
export { checkDelegationTarget } from './chain-rules.js';
export { narrowForChain } from './narrow.js';

/** The verified upstream token of a delegation and the chain it carries. */
export interface Upstream {
  readonly claims: LeashTokenClaims;
  /** Plugins of the chain so far, root first, ending with the upstream token's plugin (a person-rooted chain: its actors only). */
  readonly chain: readonly string[];
  /** The person the chain acts for (`sub`, issuer-qualified) when it is rooted at a person; undefined when rooted at a plugin. */
  readonly person?: string | undefined;
  /** The upstream token's own `act`, if it was itself delegated. */
  readonly act: ActClaim | undefined;
  /** Effects of every hop so far (the grants behind the upstream tokens). */
  readonly effects: readonly string[];
}

export interface DelegationDeps {
  /** verifyLeashToken bound to this broker (undefined: not a live token Leash signed). */
  readonly verifyToken: (token: string) => Promise<LeashTokenClaims | undefined>;
  readonly revocation: RevocationService;
}

/** What the chain rules allow this hop, after B's own policy decision. */
export interface DelegationOutcome {
  /** Requested (or default) scopes narrowed by every hop's grant; never wider than the root's. */
  readonly scopes: readonly string[];
  /** Seconds: the issued credential must not outlive the upstream token. */
  readonly ttlCap: number;
  /** `sub` of the issued token: the chain's root (the principal): a plugin, or the person it acts for. */
  readonly subject: string;
  /** The chain is rooted at a person. */
  readonly personRooted: boolean;
  /** `act` of the issued token: this plugin outermost, prior actors nested. */
  readonly act: ActClaim;
  /** Root first, this plugin last. */
  readonly chain: readonly string[];
  /** Effects of the whole chain including this hop. */
  readonly effects: readonly string[];
  /** `chain_jti` of the issued token: the upstream's own `chain_jti`, then the upstream's jti. */
  readonly upstreamJtis: readonly string[];
  /** A toxic combination whose policy action is `approval`: a human must decide. */
  readonly needsApproval: boolean;
  readonly reasons: readonly string[];
}
