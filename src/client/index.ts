/** `leash-client`: the plugin SDK (token exchange, cache, DPoP) and the resource-server verifier. */
export { awsAttestation, AWS_ATTESTATION_TOKEN_TYPE, type AwsAttestationOptions } from './aws-attestation.js';
export { createDpopKey, type DpopAlgorithm, type DpopKey, type DpopProofInput } from './dpop-key.js';
export { LeashPluginClient, type AttestationSource, type GetTokenRequest, type LeashPluginClientOptions, type LeashToken } from './plugin-client.js';
export { LeashExchangeError, LeashVerifyError, type LeashVerifyErrorCode, type LeashRefusalReason, type LeashRefusedToken } from './errors.js';
export { createLeashVerifier, type LeashPrincipal, type LeashRequestLike, type LeashVerifier, type LeashVerifierOptions } from './verifier.js';
export { requireLeashToken, challengesFor, sendVerifyError, type RequireLeashTokenOptions } from './middleware.js';
export {
  PROTECTED_RESOURCE_WELL_KNOWN,
  protectedResourceHandler,
  protectedResourceMetadata,
  resourceMetadataPath,
  resourceMetadataUrl,
  type ProtectedResourceMetadataOptions,
} from './protected-resource.js';
export { createMemoryReplayCache } from './replay-memory.js';
export {
  createRevocationFollower,
  type LeashRevocationView,
  type RevocationFacts,
  type RevocationFollower,
  type RevocationFollowerMode,
  type RevocationFollowerOptions,
} from './revocation-follower.js';
export { createUsageReporter, type UsageRecordInput, type UsageRecordOutcome, type UsageReporter, type UsageReporterOptions, type UsageReporterStats } from './usage-reporter.js';
