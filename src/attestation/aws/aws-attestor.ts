import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { epochSeconds } from '../../time/clock.js';
import type { Attestor, WorkloadIdentity } from '../attestor.js';
import type { AttestorDeps } from '../jwt-attestor.js';
import { parseCallerIdentity, stsErrorCode } from './caller-identity.js';
import { MAX_SIGNATURE_AGE, checkSignedRequest, decodeSignedRequest } from './signed-request.js';

/** How long STS may take to answer one GetCallerIdentity. */
export const STS_TIMEOUT_MS = 3000;
const MAX_ANSWER_BYTES = 64 * 1024;
/** Errors that say "not now" rather than "no". */
const TRANSIENT = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'ServiceUnavailable', 'InternalFailure', 'InternalError']);

const rejected = (stsError: string | undefined, status: number) =>
  new LeashError('ERR_ATTESTATION_REVIEW_REJECTED', 'AWS STS refused the signed GetCallerIdentity request (signature, credentials or session not valid): sign a fresh one with current credentials', {
    sts_status: status,
    ...(stsError ? { sts_error: stsError } : {}),
  });
const unavailable = (reason: string, extra: Record<string, unknown> = {}) =>
  new LeashError('ERR_ATTESTATION_REVIEW_UNAVAILABLE', 'AWS STS cannot confirm the attestation right now; retry later', { sts: reason, ...extra });

/**
 * AWS workloads (EC2, ECS, EKS, Lambda: anything holding IAM credentials) attest by a
 * SigV4-signed `sts:GetCallerIdentity` request (docs/attestation.md), the scheme Vault's
 * aws auth method uses. Leash checks the request locally (signed-request.ts), sends it to
 * the STS endpoint of its configuration (`issuer`) and nowhere else, follows no redirect,
 * and takes the caller's ARN from the answer: the subject, e.g.
 * `arn:aws:sts::123456789012:assumed-role/crm-reader/i-0abc`. The identity lives as long as
 * STS would accept the signature (`max_token_age`, at most 15 minutes, from X-Amz-Date).
 */
export function createAwsAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const endpoint = new URL(cfg.issuer);
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') throw new TypeError(`trusted issuer '${cfg.name}': the aws issuer must be an http(s) URL`);
  const serverIds: ReadonlySet<string> = new Set(typeof cfg.audience === 'string' ? [cfg.audience] : cfg.audience);
  const region = cfg.region ?? 'us-east-1';
  const maxAge = Math.min(cfg.max_token_age, MAX_SIGNATURE_AGE);
  const send = endpoint.protocol === 'https:' ? httpsRequest : httpRequest;

  function post(headers: Readonly<Record<string, string>>, body: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = send(
        endpoint,
        // Host is the endpoint's (checked equal to the signed one); nothing else is added.
        { method: 'POST', headers: { ...headers, host: endpoint.host }, timeout: STS_TIMEOUT_MS, agent: false },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) {
              res.destroy();
              reject(unavailable('answer_too_large'));
            } else chunks.push(chunk);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (err) => reject(unavailable('network', { cause: err.message.slice(0, 100) })));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => reject(unavailable(err.message === 'timeout' ? 'timeout' : 'network', { cause: err.message.slice(0, 100) })));
      req.end(body);
    });
  }

  return Object.freeze({
    name: cfg.name,
    kind: 'aws' as const,
    issuer: cfg.issuer,
    async verify(token: string, digest: string): Promise<WorkloadIdentity> {
      const signed = checkSignedRequest(decodeSignedRequest(token), { endpoint, region, serverIds, maxAge, skew: cfg.clock_skew, now: epochSeconds(deps.clock) });
      const answer = await post(signed.forward, signed.body);
      if (answer.status !== 200) {
        const code = stsErrorCode(answer.text);
        if (answer.status >= 500 || answer.status < 400 || (code !== undefined && TRANSIENT.has(code))) throw unavailable(`http_${answer.status}`, code ? { sts_error: code } : {});
        throw rejected(code, answer.status);
      }
      const caller = parseCallerIdentity(answer.text);
      if (!caller) throw unavailable('bad_answer');
      return Object.freeze({
        issuer: cfg.name,
        kind: 'aws' as const,
        subject: caller.arn,
        attributes: Object.freeze(Object.fromEntries(caller.attributes)),
        issuedAt: signed.signedAt,
        expiresAt: signed.signedAt + maxAge,
        tokenDigest: digest,
      });
    },
  });
}
