import { LeashError } from '../../errors/leash-error.js';

/** How Leash treats a failed STS call. */
export type StsFailureClass = 'retryable' | 'refused' | 'target-invalid' | 'unavailable';

export interface StsFailure {
  readonly class: StsFailureClass;
  /** The AWS error code (or network error name/code); never the message. */
  readonly code: string;
  readonly status: number | undefined;
}

/** Throttling and outages: worth another attempt after a backoff. */
const RETRYABLE = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'ServiceUnavailable',
  'InternalFailure',
  'InternalError',
  'IDPCommunicationError',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** The role (its trust policy) refuses this caller. */
const REFUSED = new Set(['AccessDenied', 'InvalidIdentityToken', 'IDPRejectedClaim', 'ExpiredToken', 'RegionDisabled']);

/** What Leash asked for is wrong: the grant's policy, role or parameters. */
const TARGET_INVALID = new Set(['MalformedPolicyDocument', 'PackedPolicyTooLarge', 'ValidationError', 'NoSuchEntity']);

/** `PackedPolicyTooLargeException` (SDK class) and `PackedPolicyTooLarge` (wire code) are one code. */
function normalize(code: string): string {
  return code.endsWith('Exception') && code !== 'Exception' ? code.slice(0, -'Exception'.length) : code;
}

function field(err: unknown, name: string): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

/** Classifies an SDK or network error by its name/code and HTTP status, never its message. */
export function classifyStsError(err: unknown): StsFailure {
  const metadata = field(err, '$metadata');
  const status = typeof field(metadata, 'httpStatusCode') === 'number' ? (field(metadata, 'httpStatusCode') as number) : undefined;
  const errno = field(err, 'code');
  const raw =
    typeof field(err, 'Code') === 'string'
      ? (field(err, 'Code') as string)
      : typeof errno === 'string' && /^E[A-Z_]+$/.test(errno)
        ? errno
        : typeof field(err, 'name') === 'string'
          ? (field(err, 'name') as string)
          : 'Unknown';
  let code = normalize(raw);
  if (code === 'Error' && status === undefined) {
    // The SDK wraps a socket error from another realm (jest's vm, a worker) in a plain Error
    // whose message keeps only the text; recover the errno from it, nothing else.
    const message = field(err, 'message');
    const errnoInText = typeof message === 'string' ? /\b(E[A-Z_]{3,})\b/.exec(message)?.[1] : undefined;
    if (errnoInText !== undefined && RETRYABLE.has(errnoInText)) code = errnoInText;
  }
  for (const candidate of new Set([raw, code])) {
    if (RETRYABLE.has(candidate)) return { class: 'retryable', code, status };
    if (REFUSED.has(candidate)) return { class: 'refused', code, status };
    if (TARGET_INVALID.has(candidate)) return { class: 'target-invalid', code, status };
  }
  // An unnamed 5xx is an outage too.
  if (status !== undefined && status >= 500) return { class: 'retryable', code, status };
  return { class: 'unavailable', code, status };
}

/** The LeashError a caller sees: a stable code and a description of ours, the AWS code only in `detail`. */
export function stsLeashError(failure: StsFailure, attempts: number, cause: unknown): LeashError {
  const detail = { aws_error: failure.code, aws_status: failure.status, attempts };
  switch (failure.class) {
    case 'refused':
      return new LeashError('ERR_UPSTREAM_REFUSED', "AWS refused to issue credentials for this role; check the role's trust policy", detail, { cause });
    case 'target-invalid':
      return new LeashError('ERR_UPSTREAM_TARGET_INVALID', "AWS rejected the session this grant asks for (its role, session policy or tags); the grant's aws settings need fixing", detail, { cause });
    case 'retryable':
      return new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'AWS STS is throttling or unavailable; retry later', detail, { cause });
    case 'unavailable':
      return new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'AWS credentials cannot be issued right now; retry later', detail, { cause });
  }
}
