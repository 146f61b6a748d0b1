/**
 * The few X.509 extensions Leash reads that node:crypto's X509Certificate does not
 * expose: key usage bits, the basic-constraints path length, and which extensions are
 * marked critical. A minimal DER walk over the certificate's own bytes (RFC 5280 §4.1);
 * anything it cannot read is reported as unreadable, never guessed.
 */

interface Tlv {
  readonly tag: number;
  /** Offset of the content. */
  readonly start: number;
  /** Offset just past the content. */
  readonly end: number;
}

function readTlv(der: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new RangeError('truncated');
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new RangeError('bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new RangeError('truncated');
  return { tag, start, end: start + len };
}

function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const t = readTlv(der, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

function oidText(der: Uint8Array, t: Tlv): string {
  const bytes = der.subarray(t.start, t.end);
  if (bytes.length === 0) throw new RangeError('empty oid');
  const parts = [Math.floor(bytes[0]! / 40), bytes[0]! % 40];
  let v = 0;
  for (let i = 1; i < bytes.length; i++) {
    v = v * 128 + (bytes[i]! & 0x7f);
    if (!(bytes[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
} as const;

/** RFC 5280 §4.2.1.3 bit numbers. */
export const KEY_USAGE = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;

export interface CertificateExtensions {
  /** OID -> critical. */
  readonly present: ReadonlyMap<string, boolean>;
  /** Key usage bits set (undefined when the extension is absent). */
  readonly keyUsage: ReadonlySet<number> | undefined;
  /** basicConstraints pathLenConstraint, when given. */
  readonly pathLen: number | undefined;
  /** The subjectAltName URIs (GeneralName [6]), in order; read from DER, not from a printed form. */
  readonly uris: readonly string[];
  /** Every subjectAltName of the kinds RFC 8705 §2.1.2 names, read from DER (IP addresses as their raw 4 or 16 bytes, hex). */
  readonly sans: SubjectAltNames;
}

export interface SubjectAltNames {
  readonly dns: readonly string[];
  readonly uri: readonly string[];
  /** iPAddress entries as lowercase hex of their octets (4 or 16 bytes). */
  readonly ip: readonly string[];
  readonly email: readonly string[];
}

/** The extensions of a DER certificate; throws RangeError when its structure cannot be read. */
export function readExtensions(der: Uint8Array): CertificateExtensions {
  const cert = readTlv(der, 0, der.length);
  const [tbs] = children(der, cert);
  if (!tbs || tbs.tag !== 0x30) throw new RangeError('no tbsCertificate');
  const present = new Map<string, boolean>();
  let keyUsage: Set<number> | undefined;
  let pathLen: number | undefined;
  const uris: string[] = [];
  const sans = { dns: [] as string[], uri: uris, ip: [] as string[], email: [] as string[] };
  const wrapper = children(der, tbs).find((t) => t.tag === 0xa3);
  if (wrapper) {
    const [list] = children(der, wrapper);
    if (!list) throw new RangeError('empty extensions');
    for (const ext of children(der, list)) {
      const parts = children(der, ext);
      const id = oidText(der, parts[0]!);
      const critical = parts.length === 3 && parts[1]!.tag === 0x01 && der[parts[1]!.start] !== 0;
      const value = parts[parts.length - 1]!;
      if (present.has(id)) throw new RangeError(`extension ${id} appears twice`);
      present.set(id, critical);
      if (id === OID.keyUsage) {
        const bits = readTlv(der, value.start, value.end);
        if (bits.tag !== 0x03) throw new RangeError('keyUsage is not a BIT STRING');
        keyUsage = new Set();
        for (let i = bits.start + 1; i < bits.end; i++) for (let b = 0; b < 8; b++) if (der[i]! & (0x80 >> b)) keyUsage.add((i - bits.start - 1) * 8 + b);
      } else if (id === OID.basicConstraints) {
        const bc = readTlv(der, value.start, value.end);
        const len = children(der, bc).find((t) => t.tag === 0x02);
        if (len) {
          pathLen = 0;
          for (let i = len.start; i < len.end; i++) pathLen = pathLen * 256 + der[i]!;
        }
      } else if (id === OID.subjectAltName) {
        const names = readTlv(der, value.start, value.end);
        for (const n of children(der, names)) {
          const bytes = Buffer.from(der.subarray(n.start, n.end));
          if (n.tag === 0x86) uris.push(bytes.toString('latin1'));
          else if (n.tag === 0x82) sans.dns.push(bytes.toString('latin1'));
          else if (n.tag === 0x81) sans.email.push(bytes.toString('latin1'));
          else if (n.tag === 0x87 && (bytes.length === 4 || bytes.length === 16)) sans.ip.push(bytes.toString('hex'));
        }
      }
    }
  }
  return { present, keyUsage, pathLen, uris, sans };
}

/** One attribute of a distinguished name: its type (dotted OID) and its value (undefined when it is not a string type Leash reads). */
export interface NameAttribute {
  readonly oid: string;
  readonly value: string | undefined;
}

function directoryString(der: Uint8Array, t: Tlv): string | undefined {
  const bytes = Buffer.from(der.subarray(t.start, t.end));
  switch (t.tag) {
    case 0x0c: // UTF8String
      return bytes.toString('utf8');
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString (read as Latin-1, as OpenSSL does)
      return bytes.toString('latin1');
    case 0x1e: {
      // BMPString: UTF-16 big-endian.
      if (bytes.length % 2 !== 0) return undefined;
      const swapped = Buffer.from(bytes);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    default:
      return undefined;
  }
}

/**
 * The certificate's subject distinguished name as RDNs in DER order (most significant
 * first, the reverse of an RFC 4514 string), each a set of attributes. Throws RangeError
 * when its structure cannot be read.
 */
export function readSubjectName(der: Uint8Array): NameAttribute[][] {
  const cert = readTlv(der, 0, der.length);
  const [tbs] = children(der, cert);
  if (!tbs || tbs.tag !== 0x30) throw new RangeError('no tbsCertificate');
  const fields = children(der, tbs);
  const subject = fields[fields[0]?.tag === 0xa0 ? 5 : 4];
  if (!subject || subject.tag !== 0x30) throw new RangeError('no subject');
  return children(der, subject).map((rdn) => {
    if (rdn.tag !== 0x31) throw new RangeError('an RDN is not a SET');
    return children(der, rdn).map((atv) => {
      const [type, value] = children(der, atv);
      if (!type || type.tag !== 0x06 || !value) throw new RangeError('malformed attribute');
      return { oid: oidText(der, type), value: directoryString(der, value) };
    });
  });
}
