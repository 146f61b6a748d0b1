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
