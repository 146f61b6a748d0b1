import type { X509Certificate } from 'node:crypto';
import { KEY_USAGE, OID, readExtensions, type CertificateExtensions } from './certificate-extensions.js';

/** Longest path accepted from a leaf to its trust anchor (intermediates in between). */
const MAX_INTERMEDIATES = 5;

/** Extensions whose meaning Leash applies (or that do not restrict a path); any other critical one refuses the certificate. */
const UNDERSTOOD = new Set<string>([OID.subjectKeyIdentifier, OID.keyUsage, OID.subjectAltName, OID.basicConstraints, OID.authorityKeyIdentifier, OID.extKeyUsage]);

export type ChainFailure = 'malformed' | 'expired' | 'not_yet_valid' | 'untrusted' | 'constraints';

export type ChainResult =
  | { readonly ok: true; readonly path: readonly X509Certificate[]; readonly anchor: X509Certificate; readonly leafExtensions: CertificateExtensions }
  | { readonly ok: false; readonly failure: ChainFailure; readonly reason: string };

const fail = (failure: ChainFailure, reason: string): ChainResult => ({ ok: false, failure, reason });

function extensionsOf(cert: X509Certificate): CertificateExtensions | undefined {
  try {
    return readExtensions(cert.raw);
  } catch {
    return undefined;
  }
}

function timeProblem(cert: X509Certificate, now: number, what: string): ChainResult | undefined {
  if (now < cert.validFromDate.getTime()) return fail('not_yet_valid', `the ${what} is not valid before ${cert.validFromDate.toISOString()}`);
  if (now > cert.validToDate.getTime()) return fail('expired', `the ${what} expired at ${cert.validToDate.toISOString()}`);
  return undefined;
}

/** `child` was issued and signed by `issuer`'s key. */
function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** A certificate that may sign others: basicConstraints CA, keyCertSign when key usage is given, no unknown critical extension. */
function caProblem(cert: X509Certificate, ext: CertificateExtensions | undefined, what: string): ChainResult | undefined {
  if (!ext) return fail('malformed', `the ${what} cannot be read`);
  if (!cert.ca) return fail('constraints', `the ${what} is not a CA (basicConstraints)`);
  if (ext.keyUsage && !ext.keyUsage.has(KEY_USAGE.keyCertSign)) return fail('constraints', `the ${what} may not sign certificates (keyUsage)`);
  return criticalProblem(ext, what);
}

function criticalProblem(ext: CertificateExtensions, what: string): ChainResult | undefined {
  if (ext.present.has(OID.nameConstraints)) return fail('constraints', `the ${what} carries name constraints, which Leash does not evaluate: it refuses rather than ignore them`);
  for (const [oid, critical] of ext.present) if (critical && !UNDERSTOOD.has(oid)) return fail('constraints', `the ${what} has a critical extension Leash does not understand (${oid})`);
  return undefined;
}

/**
 * Path validation from a leaf to one of `anchors` (RFC 5280 §6, the parts a SPIFFE or
 * private PKI uses): every signature, every validity window at `now` (anchors included),
 * CA and keyCertSign on every issuer, path length constraints, no unknown critical
 * extension and no name constraints (refused, not ignored). `intermediates` are the
 * certificates the client sent after its leaf, in any order. What the leaf itself must be
 * (an SVID, a client certificate) is the caller's check, on `leafExtensions`.
 */
export function verifyChain(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Certificate[], now: number): ChainResult {
  const leafExtensions = extensionsOf(leaf);
  if (!leafExtensions) return fail('malformed', 'the certificate cannot be read');
  const leafCritical = criticalProblem(leafExtensions, 'certificate');
  if (leafCritical) return leafCritical;
  const leafTime = timeProblem(leaf, now, 'certificate');
  if (leafTime) return leafTime;

  const path: X509Certificate[] = [leaf];
  let current = leaf;
  for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
    const anchor = anchors.find((a) => issuedBy(current, a));
    if (anchor) {
      const problem = caProblem(anchor, extensionsOf(anchor), 'bundle CA') ?? timeProblem(anchor, now, 'bundle CA that issued it');
      if (problem) return problem;
      const pathLen = extensionsOf(anchor)?.pathLen;
      if (pathLen !== undefined && path.length - 1 > pathLen) return fail('constraints', 'the path is longer than the bundle CA allows (pathLenConstraint)');
      return { ok: true, path, anchor, leafExtensions };
    }
    const next = intermediates.find((c) => !path.includes(c) && issuedBy(current, c));
    if (!next) return fail('untrusted', depth === 0 ? 'the certificate was not issued by a CA of the bundle' : 'the certificate chain does not lead to a CA of the bundle');
    const ext = extensionsOf(next);
    const problem = caProblem(next, ext, 'intermediate CA') ?? timeProblem(next, now, 'intermediate CA');
    if (problem) return problem;
    // Intermediates below this one (RFC 5280 §4.2.1.9).
    if (ext?.pathLen !== undefined && path.length - 1 > ext.pathLen) return fail('constraints', 'the path is longer than an intermediate CA allows (pathLenConstraint)');
    path.push(next);
    current = next;
  }
  return fail('untrusted', `the certificate chain is longer than ${MAX_INTERMEDIATES} intermediates`);
}
