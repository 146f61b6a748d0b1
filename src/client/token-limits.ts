/**
 * The longest token Leash accepts, in characters, wherever one arrives: an attestation or a
 * person's token as `subject_token`, an `actor_token`, a `client_assertion`, a Leash token at
 * introspection, revocation or delegation, a DPoP proof, and a token the SDK verifier is
 * handed. Real ones are 1-2 KiB (a signed AWS request up to ~5 KiB; a DPoP proof
 * with a 4096-bit RSA key in its header ~1.5 KiB); anything longer is an
 * attack or a mistake and is refused before any parsing or crypto. The SDK and the broker
 * share this one value (the broker may import the SDK, never the reverse): docs/errors.md.
 */
export const MAX_TOKEN_LENGTH = 8192;
