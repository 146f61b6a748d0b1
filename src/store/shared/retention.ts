/*
 * How long each backend keeps records after they stop mattering: one number for both, so a
 * record purged by one backend is purged by the other at the same moment.
 */

/** Approvals are forgotten this long after the last moment they could matter (expiry, decision, redemption, use). */
export const APPROVAL_RETENTION_MS = 7 * 86400_000;

/** A revoked Vault lease is forgotten this long after its revocation. */
export const LEASE_RETENTION_MS = 86400_000;
