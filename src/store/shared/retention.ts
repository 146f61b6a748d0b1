/*
 * How long each backend keeps records after they stop mattering: one number for both, so a
 * record purged by one backend is purged by the other at the same moment.
 */

/** Approvals are forgotten this long after the last moment they could matter (expiry, decision, redemption, use). */
export const APPROVAL_RETENTION_MS = 7 * 86400_000;

/**
 * An issued token's index row is forgotten this long after the token expired (Redis lets the
 * record go by TTL; SQLite deletes it in the token retention pass). Never less than the
 * longest a task may run (settings.tasks.max_ttl), so a live task still sees every token it
 * was issued (toxic combinations, its timeline).
 */
export const TOKEN_RETENTION_MS = 48 * 3600_000;

/** A revoked Vault lease is forgotten this long after its revocation. */
export const LEASE_RETENTION_MS = 86400_000;
