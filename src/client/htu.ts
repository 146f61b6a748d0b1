/**
 * The form of an HTTP URI that DPoP compares (RFC 9449 §4.3 point 9): query and fragment
 * dropped, then syntax- and scheme-based normalisation (RFC 3986 §6.2.2-6.2.3) as the WHATWG
 * URL parser does it: lower-case scheme and host, default port removed, dot segments
 * resolved, empty path as `/`. Returns undefined when the value is not an http(s) URL.
 */
export function normalizeHtu(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
  if (u.username !== '' || u.password !== '') return undefined;
  return `${u.protocol}//${u.host}${u.pathname}`;
}
