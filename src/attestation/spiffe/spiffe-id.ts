/** A parsed SPIFFE ID (SPIFFE-ID spec §2): `spiffe://<trust domain><path>`. */
export interface SpiffeId {
  readonly trustDomain: string;
  /** `/seg/seg`, or '' for a trust domain's own ID. */
  readonly path: string;
}

const MAX_LENGTH = 2048;
const MAX_TRUST_DOMAIN = 255;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const PREFIX = 'spiffe://';

/**
 * Parse strictly, as go-spiffe does: lowercase scheme and trust domain, no userinfo, port,
 * query, fragment or percent-encoding (the character sets exclude them), no empty, `.` or
 * `..` path segments, no trailing slash. Returns why it is invalid instead of throwing.
 */
export function parseSpiffeId(value: string): SpiffeId | { error: string } {
  if (value.length > MAX_LENGTH) return { error: 'is longer than 2048 bytes' };
  if (!value.startsWith(PREFIX)) return { error: "must start with 'spiffe://'" };
  const rest = value.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdError = trustDomainError(trustDomain);
  if (tdError) return { error: tdError };
  if (path !== '') {
    for (const segment of path.slice(1).split('/')) {
      if (segment === '') return { error: 'has an empty path segment (or a trailing slash)' };
      if (segment === '.' || segment === '..') return { error: "has a '.' or '..' path segment" };
      if (!SEGMENT.test(segment)) return { error: 'has a path character outside [A-Za-z0-9._-]' };
    }
  }
  return { trustDomain, path };
}

/** Why a trust domain name is invalid, or undefined when it is valid. */
export function trustDomainError(trustDomain: string): string | undefined {
  if (trustDomain.length === 0) return 'has an empty trust domain';
  if (trustDomain.length > MAX_TRUST_DOMAIN) return 'has a trust domain longer than 255 characters';
  if (!TRUST_DOMAIN.test(trustDomain)) return 'has a trust domain character outside [a-z0-9._-] (no uppercase, port or userinfo)';
  return undefined;
}
