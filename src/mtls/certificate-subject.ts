import { BlockList, isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { readExtensions, readSubjectName, type NameAttribute } from './certificate-extensions.js';

/**
 * RFC 8705 §2.1.2: the client metadata that names the one certificate subject a
 * `tls_client_auth` client must present (exactly one of them is registered), with the
 * names oidc-provider gives them.
 */
export const TLS_CLIENT_AUTH_SUBJECT_PARAMS = ['tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email'] as const;
export type TlsClientAuthSubjectParam = (typeof TLS_CLIENT_AUTH_SUBJECT_PARAMS)[number];

/** A registered subject, parsed once at load; `matches` reads the certificate's DER, never a printed form. */
export interface SubjectMatcher {
  readonly param: TlsClientAuthSubjectParam;
  readonly expected: string;
  matches(cert: X509Certificate): boolean;
}

/** RFC 4514 §3 short names (and a few OpenSSL prints) to attribute type OIDs. */
const SHORT_NAMES: Readonly<Record<string, string>> = {
  CN: '2.5.4.3',
  SN: '2.5.4.4',
  SERIALNUMBER: '2.5.4.5',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  STREET: '2.5.4.9',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  TITLE: '2.5.4.12',
  GN: '2.5.4.42',
  DC: '0.9.2342.19200300.100.1.25',
  UID: '0.9.2342.19200300.100.1.1',
  EMAILADDRESS: '1.2.840.113549.1.9.1',
};

/** Splits on `sep` where it is not escaped by a backslash. */
function splitUnescaped(text: string, sep: string): string[] {
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === sep) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/** RFC 4514 §3 value unescaping: `\` before a special character, or two hex digits (UTF-8 bytes). */
function unescapeValue(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '\\') {
      bytes.push(...Buffer.from(ch, 'utf8'));
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (i + 1 < raw.length) {
      bytes.push(...Buffer.from(raw[i + 1]!, 'utf8'));
      i++;
    } else throw new Error('ends with a lone backslash');
  }
  return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
}

/** Trims unescaped spaces at both ends (a `\ ` at an end is part of the value). */
function trimUnescaped(raw: string): string {
  let end = raw.length;
  while (end > 0 && raw[end - 1] === ' ' && raw[end - 2] !== '\\') end--;
  return raw.slice(0, end).replace(/^ +/, '');
}

/**
 * An RFC 4514 string as RDNs in DER order (the string starts with the least significant
 * RDN). Throws Error with a reason for what it cannot read; `#` hex-encoded BER values are
 * refused rather than compared byte-for-byte against a string.
 */
export function parseDistinguishedName(dn: string): NameAttribute[][] {
  if (dn.trim() === '') throw new Error('is empty');
  const rdns = splitUnescaped(dn, ',').map((rdn) =>
    splitUnescaped(rdn, '+').map((atv) => {
      const eq = atv.indexOf('=');
      if (eq <= 0) throw new Error(`'${atv.trim()}' is not type=value`);
      const type = atv.slice(0, eq).trim();
      const oid = /^\d+(\.\d+)+$/.test(type) ? type : SHORT_NAMES[type.toUpperCase()];
      if (oid === undefined) throw new Error(`attribute type '${type}' is unknown: use a dotted OID`);
      const raw = trimUnescaped(atv.slice(eq + 1));
      if (raw.startsWith('#')) throw new Error('hex-encoded (#) values are not supported: write the value as a string');
      return { oid, value: unescapeValue(raw) };
    }),
  );
  return rdns.reverse();
}

/** X.520 caseIgnoreMatch, approximately: compatibility-normalized, spaces collapsed, case folded. */
const normalize = (value: string): string => value.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();

function sameName(cert: readonly NameAttribute[][], expected: readonly NameAttribute[][]): boolean {
  if (cert.length !== expected.length) return false;
  return expected.every((rdn, i) => {
    const actual = cert[i]!;
    if (actual.length !== rdn.length) return false;
    const left = [...actual];
    return rdn.every((want) => {
      const at = left.findIndex((have) => have.oid === want.oid && have.value !== undefined && normalize(have.value) === normalize(want.value!));
      if (at < 0) return false;
      left.splice(at, 1);
      return true;
    });
  });
}

/** The 4 or 16 bytes of an IP address's text form, as colon-free groups BlockList can compare. */
function ipFromHex(hex: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const bytes = Buffer.from(hex, 'hex');
  if (bytes.length === 4) return { address: [...bytes].join('.'), family: 'ipv4' };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return { address: groups.join(':'), family: 'ipv6' };
}

/** `local@domain`: the local part as written, the domain case-insensitively (RFC 5280 §7.5). */
function sameEmail(a: string, b: string): boolean {
  const at = (s: string) => s.lastIndexOf('@');
  const [ia, ib] = [at(a), at(b)];
  if (ia <= 0 || ib <= 0) return false;
  return a.slice(0, ia) === b.slice(0, ib) && a.slice(ia + 1).toLowerCase() === b.slice(ib + 1).toLowerCase();
}

function sans(cert: X509Certificate) {
  try {
    return readExtensions(cert.raw).sans;
  } catch {
    return undefined;
  }
}

/**
 * The matcher for one registered `tls_client_auth_*` value (what oidc-provider leaves to
 * `features.mTLS.certificateSubjectMatches`): the subject DN compared attribute by
 * attribute (RFC 4514 string against the DER subject, case- and space-insensitive), a SAN
 * when any entry of its type equals the value (DNS names case-insensitively, IP addresses
 * by their bytes, e-mail domains case-insensitively, URIs exactly). Throws Error with the
 * reason for a value that cannot be read (a config problem).
 */
export function subjectMatcher(param: TlsClientAuthSubjectParam, expected: string): SubjectMatcher {
  let test: (cert: X509Certificate) => boolean;
  switch (param) {
    case 'tls_client_auth_subject_dn': {
      const name = parseDistinguishedName(expected);
      test = (cert) => {
        try {
          return sameName(readSubjectName(cert.raw), name);
        } catch {
          return false;
        }
      };
      break;
    }
    case 'tls_client_auth_san_dns': {
      const want = expected.toLowerCase();
      test = (cert) => sans(cert)?.dns.some((d) => d.toLowerCase() === want) ?? false;
      break;
    }
    case 'tls_client_auth_san_uri':
      test = (cert) => sans(cert)?.uri.includes(expected) ?? false;
      break;
    case 'tls_client_auth_san_ip': {
      const family = isIP(expected);
      if (family === 0) throw new Error(`'${expected}' is not an IP address`);
      const list = new BlockList();
      list.addAddress(expected, family === 4 ? 'ipv4' : 'ipv6');
      test = (cert) =>
        sans(cert)?.ip.some((hex) => {
          const ip = ipFromHex(hex);
          return ip.family === (family === 4 ? 'ipv4' : 'ipv6') && list.check(ip.address, ip.family);
        }) ?? false;
      break;
    }
    case 'tls_client_auth_san_email':
      if (!/^[^@\s]+@[^@\s]+$/.test(expected)) throw new Error(`'${expected}' is not an e-mail address`);
      test = (cert) => sans(cert)?.email.some((e) => sameEmail(e, expected)) ?? false;
      break;
  }
  return Object.freeze({ param, expected, matches: test });
}
