import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

/*
 * Just enough X.509 (DER by hand, ECDSA P-256) for a test HTTPS server: a self-signed CA
 * and a server certificate it issues for 127.0.0.1 / localhost, so clients verify the
 * server with a real CA bundle and a real hostname check.
 */

function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]) => tlv(0x31, Buffer.concat(parts));
const explicit = (n: number, inner: Buffer) => tlv(0xa0 + n, inner);
const octets = (b: Buffer) => tlv(0x04, b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [a * 40 + b];
  for (const v of rest) {
    const enc = [v & 0x7f];
    for (let x = v >> 7; x > 0; x >>= 7) enc.unshift((x & 0x7f) | 0x80);
    bytes.push(...enc);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

const name = (cn: string) => seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));

function utcTime(ms: number): Buffer {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return tlv(0x17, Buffer.from(`${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function certificate(c: { issuer: string; subject: string; subjectKey: KeyObject; issuerKey: KeyObject; extensions: Buffer[] }): Buffer {
  const now = Date.now();
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(randomBytes(16)),
    ECDSA_SHA256,
    name(c.issuer),
    seq(utcTime(now - 3600_000), utcTime(now + 7 * 86400_000)),
    name(c.subject),
    c.subjectKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...c.extensions)),
  );
  const signature = sign('sha256', tbs, { key: c.issuerKey, dsaEncoding: 'der' });
  return seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
}

const pem = (der: Buffer, label: string) => `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;

/** A CA and a server certificate for 127.0.0.1 and localhost, PEM encoded. */
export function testTls(): { ca: string; cert: string; key: string } {
  const caKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caDer = certificate({
    issuer: 'Leash Test CA',
    subject: 'Leash Test CA',
    subjectKey: caKeys.publicKey,
    issuerKey: caKeys.privateKey,
    // basicConstraints (critical): CA:TRUE
    extensions: [seq(oid('2.5.29.19'), bool(true), octets(seq(bool(true))))],
  });
  const serverKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serverDer = certificate({
    issuer: 'Leash Test CA',
    subject: 'kubernetes.test',
    subjectKey: serverKeys.publicKey,
    issuerKey: caKeys.privateKey,
    extensions: [
      seq(oid('2.5.29.19'), bool(true), octets(seq())),
      // subjectAltName: iPAddress 127.0.0.1, dNSName localhost
      seq(oid('2.5.29.17'), octets(seq(tlv(0x87, Buffer.from([127, 0, 0, 1])), tlv(0x82, Buffer.from('localhost'))))),
    ],
  });
  return { ca: pem(caDer, 'CERTIFICATE'), cert: pem(serverDer, 'CERTIFICATE'), key: serverKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** RFC 5280 key usage bit numbers. */
export const KU = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

function bitString(bits: readonly number[]): Buffer {
  if (bits.length === 0) return tlv(0x03, Buffer.from([0]));
  const high = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(high / 8) + 1);
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 0x80 >> (b % 8);
  return tlv(0x03, Buffer.concat([Buffer.from([7 - (high % 8)]), bytes]));
}

export interface IssuedCert {
  readonly der: Buffer;
  readonly pem: string;
  readonly keyPem: string;
  readonly key: KeyObject;
  readonly name: string;
  /** The subject Name's DER (what a child names as its issuer). */
  readonly subjectDer?: Buffer;
}

export interface CertSpec {
  /** Subject common name (also how children name their issuer). */
  readonly name: string;
  /** Signed by this certificate's key; omitted: self-signed. */
  readonly issuer?: IssuedCert;
  readonly ca?: boolean;
  readonly pathLen?: number;
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  readonly emails?: readonly string[];
  /** iPAddress SANs as raw bytes (4 or 16). */
  readonly ips?: readonly Buffer[];
  /** Subject RDNs in DER order (most significant first), each [OID, UTF-8 value]; omitted: CN=name. */
  readonly subject?: ReadonlyArray<readonly [string, string]>;
  /** Key usage bits; omitted: CA → keyCertSign+cRLSign, leaf → digitalSignature. `null`: no extension. */
  readonly keyUsage?: readonly number[] | null;
  readonly eku?: readonly string[];
  readonly notBefore?: number;
  readonly notAfter?: number;
  /** An extra critical extension of this OID (e.g. name constraints, or one nobody knows). */
  readonly critical?: string;
}

/** A certificate made in the test (ECDSA P-256, real signatures), for mutual TLS and X.509-SVIDs. */
export function issueCertificate(spec: CertSpec): IssuedCert {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const ca = spec.ca ?? false;
  const extensions: Buffer[] = [seq(oid('2.5.29.19'), bool(true), octets(seq(...(ca ? [bool(true), ...(spec.pathLen !== undefined ? [integer(Buffer.from([spec.pathLen]))] : [])] : []))))];
  const ku = spec.keyUsage === undefined ? (ca ? [KU.keyCertSign, KU.cRLSign] : [KU.digitalSignature]) : spec.keyUsage;
  if (ku !== null) extensions.push(seq(oid('2.5.29.15'), bool(true), octets(bitString(ku))));
  const names = [
    ...(spec.uris ?? []).map((u) => tlv(0x86, Buffer.from(u, 'latin1'))),
    ...(spec.dns ?? []).map((d) => tlv(0x82, Buffer.from(d))),
    ...(spec.emails ?? []).map((e) => tlv(0x81, Buffer.from(e))),
    ...(spec.ips ?? []).map((ip) => tlv(0x87, ip)),
  ];
  if (names.length > 0) extensions.push(seq(oid('2.5.29.17'), octets(seq(...names))));
  if (spec.eku) extensions.push(seq(oid('2.5.29.37'), octets(seq(...spec.eku.map(oid)))));
  if (spec.critical) extensions.push(seq(oid(spec.critical), bool(true), octets(seq())));
  const subjectDer = spec.subject ? seq(...spec.subject.map(([type, value]) => set(seq(oid(type), tlv(0x0c, Buffer.from(value, 'utf8')))))) : name(spec.name);
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(randomBytes(16)),
    ECDSA_SHA256,
    spec.issuer ? (spec.issuer.subjectDer ?? name(spec.issuer.name)) : subjectDer,
    seq(utcTime(spec.notBefore ?? now - 600_000), utcTime(spec.notAfter ?? now + 3600_000)),
    subjectDer,
    keys.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: spec.issuer?.key ?? keys.privateKey, dsaEncoding: 'der' });
  const der = seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  return { der, pem: pem(der, 'CERTIFICATE'), keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), key: keys.privateKey, name: spec.name, subjectDer };
}
