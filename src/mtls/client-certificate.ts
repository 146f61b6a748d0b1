import { BlockList, isIP, type Socket } from 'node:net';
import { createHash, X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';

/** A client certificate that came with a request: on the TLS connection, or in a trusted proxy's header. */
export interface PresentedCertificate {
  readonly leaf: X509Certificate;
  /** What the client sent after its leaf (any order); the verifier picks its path from them. */
  readonly intermediates: readonly X509Certificate[];
  readonly source: 'tls' | 'header';
  /** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the leaf's DER. */
  readonly thumbprint: string;
}

/** RFC 8705 §3.1: the confirmation member of a certificate-bound token. */
export const X5T_S256 = 'x5t#S256';

export const certificateThumbprint = (der: Uint8Array): string => createHash('sha256').update(der).digest('base64url');

/** A header carrying a whole chain is a few KiB; past this it is not one. */
const MAX_HEADER_LENGTH = 32 * 1024;
const MAX_CHAIN = 8;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

const malformed = (description: string) => new LeashError('ERR_CLIENT_CERT_MALFORMED', description);

function parsePem(text: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (out.length === MAX_CHAIN) throw malformed(`the client certificate chain has more than ${MAX_CHAIN} certificates`);
    try {
      out.push(new X509Certificate(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
    } catch {
      throw malformed('the client certificate in the proxy header is not a valid X.509 certificate');
    }
  }
  return out;
}

function presented(leaf: X509Certificate, intermediates: X509Certificate[], source: 'tls' | 'header'): PresentedCertificate {
  return Object.freeze({ leaf, intermediates: Object.freeze(intermediates.filter((c) => !c.raw.equals(leaf.raw))), source, thumbprint: certificateThumbprint(leaf.raw) });
}

/** Splits on `sep` outside double quotes (XFCC values such as Subject are quoted and may hold commas). */
function splitOutsideQuotes(value: string, sep: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && quoted) i++;
    else if (ch === '"') quoted = !quoted;
    else if (ch === sep && !quoted) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/**
 * Envoy's `x-forwarded-client-cert`: `Key=value` pairs joined by `;`, one element per
 * proxy joined by `,`. Only one element is accepted: a proxy that appends to what the
 * client sent would let the client write the first one.
 */
function fromXfcc(value: string): PresentedCertificate | undefined {
  const elements = splitOutsideQuotes(value, ',');
  if (elements.length !== 1) throw malformed('the client certificate header holds several elements: configure the proxy to replace it (Envoy: SANITIZE_SET), not to append to it');
  const fields = new Map<string, string>();
  for (const pair of splitOutsideQuotes(elements[0]!, ';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim().toLowerCase();
    let v = pair.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    if (fields.has(key)) throw malformed(`the client certificate header names '${key}' twice`);
    fields.set(key, v);
  }
  const cert = fields.get('cert');
  // A connection the proxy accepted without a client certificate: the element carries only By/Hash.
  if (cert === undefined || cert === '') return undefined;
  const leaf = parsePem(decode(cert));
  if (leaf.length !== 1) throw malformed("the header's Cert must be exactly one URL-encoded PEM certificate");
  const chain = fields.get('chain');
  return presented(leaf[0]!, chain ? parsePem(decode(chain)) : [], 'header');
}

function fromPemHeader(value: string): PresentedCertificate | undefined {
  if (value === '' || value === '(null)') return undefined;
  const certs = parsePem(decode(value));
  if (certs.length === 0) throw malformed('the client certificate header holds no PEM certificate');
  return presented(certs[0]!, certs.slice(1), 'header');
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw malformed('the client certificate header is not URL-encoded');
  }
}

/** The certificate a TLS socket's peer presented (cached per connection: a kept-alive connection does not re-read it). */
const bySocket = new WeakMap<Socket, PresentedCertificate | null>();

function fromSocket(socket: Socket): PresentedCertificate | undefined {
  if (!(socket instanceof TLSSocket)) return undefined;
  const cached = bySocket.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  let found: PresentedCertificate | null = null;
  const leaf = socket.getPeerX509Certificate();
  if (leaf) {
    // The chain as Node hands it (issuerCertificate links); the verifier decides what it proves.
    const intermediates: X509Certificate[] = [];
    let link = socket.getPeerCertificate(true)?.issuerCertificate;
    const seen = new Set<string>();
    while (link && link.raw && !seen.has(link.fingerprint256) && intermediates.length < MAX_CHAIN) {
      seen.add(link.fingerprint256);
      intermediates.push(new X509Certificate(link.raw));
      link = link.issuerCertificate;
    }
    found = presented(leaf, intermediates, 'tls');
  }
  bySocket.set(socket, found);
  return found ?? undefined;
}

/** `::ffff:10.0.0.1` is the IPv4 peer it stands for. */
function peerAddress(socket: Socket): { address: string; family: 'ipv4' | 'ipv6' } | undefined {
  let address = socket.remoteAddress;
  if (address === undefined) return undefined;
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
  const v = isIP(address);
  return v === 0 ? undefined : { address, family: v === 4 ? 'ipv4' : 'ipv6' };
}

export type ClientCertificateSource = (req: IncomingMessage) => PresentedCertificate | undefined;

/**
 * One value of the configured client-certificate header, read as the trusted proxy's (explain
 * states what the proxy would send). Without `settings.client_certificate_header` there is
 * no such header: ERR_CLIENT_CERT_HEADER_UNTRUSTED.
 */
export function readCertificateHeader(settings: Pick<Settings, 'client_certificate_header'>, value: string): PresentedCertificate | undefined {
  const header = settings.client_certificate_header;
  if (!header) throw new LeashError('ERR_CLIENT_CERT_HEADER_UNTRUSTED', 'this broker reads client certificates from TLS only (no settings.client_certificate_header)');
  if (value.length > MAX_HEADER_LENGTH) throw malformed(`the ${header.name} header is too long`);
  return (header.format === 'xfcc' ? fromXfcc : fromPemHeader)(value);
}

/**
 * Where a request's client certificate comes from, per the settings: the TLS connection,
 * or (only when `settings.client_certificate_header` is set, and only from its
 * `trusted_proxies`) the header a TLS-terminating proxy put it in. A request that carries
 * that header from any other address is refused (ERR_CLIENT_CERT_HEADER_UNTRUSTED): a
 * client must not be able to name a certificate it does not hold. Throws LeashError for a
 * header that cannot be read (ERR_CLIENT_CERT_MALFORMED).
 */
export function clientCertificateSource(settings: Pick<Settings, 'client_certificate_header'>): ClientCertificateSource {
  const header = settings.client_certificate_header;
  if (!header) return (req) => fromSocket(req.socket);
  const trusted = new BlockList();
  for (const entry of header.trusted_proxies) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) trusted.addAddress(address, family);
    else trusted.addSubnet(address, Number(bits), family);
  }
  const name = header.name.toLowerCase();
  const parse = header.format === 'xfcc' ? fromXfcc : fromPemHeader;
  return (req) => {
    const raw = req.headersDistinct[name];
    const peer = peerAddress(req.socket);
    const fromProxy = peer !== undefined && trusted.check(peer.address, peer.family);
    if (!fromProxy) {
      if (raw !== undefined) throw new LeashError('ERR_CLIENT_CERT_HEADER_UNTRUSTED', `the ${header.name} header is only accepted from the configured proxies`, { peer: peer?.address });
      return fromSocket(req.socket);
    }
    if (raw === undefined) return undefined;
    if (raw.length !== 1) throw malformed(`the ${header.name} header must appear once`);
    const value = raw[0]!;
    if (value.length > MAX_HEADER_LENGTH) throw malformed(`the ${header.name} header is too long`);
    return parse(value);
  };
}
