import type { Settings } from './schema.js';

/**
 * The longest any Leash-signed token lives, clock skew included, in milliseconds: access
 * tokens (`tokens.max_ttl`) and AWS web-identity tokens (`aws.web_identity_token_ttl`).
 * A retired key stays published, and a revocation stays in force, at least this long.
 */
export function maxTokenLifeMs(settings: Settings): number {
  return (Math.max(settings.tokens.max_ttl, settings.aws.web_identity_token_ttl) + settings.tokens.clock_skew) * 1000;
}
