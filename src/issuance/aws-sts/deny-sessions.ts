import type { IAMClient, IAMClientConfig } from '@aws-sdk/client-iam';
import { iamSdk } from './aws-sdk.js';
import type { AwsSettingsConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';

/**
 * The one revocation AWS offers for role sessions: an inline deny-all policy on the role,
 * conditioned on `aws:TokenIssueTime` earlier than a point in time (what the IAM console's
 * "Revoke active sessions" does). AWS cannot revoke a single session, so this denies
 * every session of the role issued before `before`, whoever it was issued to.
 */

/** The inline policy's name; putting it again replaces it (the newest cut-off wins). */
export const DENY_SESSIONS_POLICY_NAME = 'leash-deny-sessions-before';

const ROLE_ARN = /^arn:aws[a-z-]*:iam::[0-9]{12}:role\/(?:[A-Za-z0-9+=,.@_-]+\/)*([A-Za-z0-9+=,.@_-]{1,64})$/;

export interface DenySessionsOptions {
  readonly roleArn: string;
  /** Sessions whose token was issued strictly before this instant are denied. */
  readonly before: Date;
  /** Why: for the caller's audit event (IAM policies carry no free text). */
  readonly reason: string;
  readonly iam: IAMClient;
}

export interface DenySessionsResult {
  readonly roleArn: string;
  readonly roleName: string;
  readonly policyName: string;
  /** The ISO 8601 cut-off written into the policy. */
  readonly before: string;
  readonly policyDocument: string;
  /** The IAM request id, to correlate with CloudTrail. */
  readonly requestId: string | undefined;
}

/** The role name PutRolePolicy wants: the last path segment of the ARN. */
export function roleNameFromArn(roleArn: string): string {
  const m = ROLE_ARN.exec(roleArn);
  if (!m) throw new LeashError('ERR_ADMIN_INVALID', 'role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)');
  return m[1] as string;
}

/** The deny policy, exactly as AWS documents it for revoking a role's older sessions. */
export function denySessionsPolicy(before: Date): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'LeashRevokeOlderSessions',
        Effect: 'Deny',
        Action: '*',
        Resource: '*',
        Condition: { DateLessThan: { 'aws:TokenIssueTime': before.toISOString() } },
      },
    ],
  });
}

export async function denySessionsIssuedBefore(opts: DenySessionsOptions): Promise<DenySessionsResult> {
  if (!(opts.before instanceof Date) || Number.isNaN(opts.before.getTime())) throw new TypeError('denySessionsIssuedBefore: before must be a valid Date');
  if (typeof opts.reason !== 'string' || opts.reason.trim() === '') throw new TypeError('denySessionsIssuedBefore: a reason is required');
  const roleName = roleNameFromArn(opts.roleArn);
  const policyDocument = denySessionsPolicy(opts.before);
  try {
    const { PutRolePolicyCommand } = iamSdk();
    const out = await opts.iam.send(new PutRolePolicyCommand({ RoleName: roleName, PolicyName: DENY_SESSIONS_POLICY_NAME, PolicyDocument: policyDocument }));
    return {
      roleArn: opts.roleArn,
      roleName,
      policyName: DENY_SESSIONS_POLICY_NAME,
      before: opts.before.toISOString(),
      policyDocument,
      requestId: out.$metadata.requestId,
    };
  } catch (err) {
    throw mapIamError(err);
  }
}

interface AwsErrorShape {
  readonly name?: string;
  readonly $fault?: string;
  readonly $metadata?: { readonly httpStatusCode?: number; readonly requestId?: string };
}

/**
 * IAM's answer, reduced to a stable code: the caller learns what to look at, never AWS's
 * message (which can name accounts and ARNs). The IAM error name and request id go in
 * `detail`, for the audit trail.
 */
export function mapIamError(err: unknown): LeashError {
  if (err instanceof LeashError) return err;
  const e = (err ?? {}) as AwsErrorShape;
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const status = e.$metadata?.httpStatusCode;
  const detail = { iam_error: name, http_status: status, request_id: e.$metadata?.requestId };
  switch (name) {
    case 'NoSuchEntityException':
    case 'NoSuchEntity':
      return new LeashError('ERR_UPSTREAM_TARGET_INVALID', 'IAM does not know this role (deleted, or in another account)', detail, { cause: err });
    case 'AccessDenied':
    case 'AccessDeniedException':
    case 'UnmodifiableEntityException':
    case 'UnmodifiableEntity':
      return new LeashError('ERR_UPSTREAM_REFUSED', "IAM refused to change this role's policies: Leash needs iam:PutRolePolicy on it", detail, { cause: err });
    case 'MalformedPolicyDocumentException':
    case 'MalformedPolicyDocument':
    case 'LimitExceededException':
    case 'LimitExceeded':
      return new LeashError('ERR_UPSTREAM_REFUSED', 'IAM rejected the deny policy for this role (policy size or count limit); apply it by hand', detail, { cause: err });
    case 'InvalidClientTokenId':
    case 'SignatureDoesNotMatch':
    case 'ExpiredToken':
    case 'UnrecognizedClientException':
      return new LeashError('ERR_UPSTREAM_REFUSED', "IAM did not accept Leash's own AWS credentials (check the default provider chain); the sessions are NOT denied", detail, { cause: err });
    case 'CredentialsProviderError':
      return new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'Leash has no AWS credentials to call IAM with (default provider chain); the sessions are NOT denied', detail, { cause: err });
    default:
      break;
  }
  // Throttling, IAM outages and network failures: the action did not happen; retry.
  return new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'IAM could not be reached or did not answer; the sessions are NOT denied yet, retry', detail, { cause: err });
}

/**
 * An IAM client on Leash's own AWS credentials (the default provider chain), for the
 * deny action. `settings.iam_endpoint` points it elsewhere (a VPC endpoint, or tests).
 */
export function createIamClient(settings: Pick<AwsSettingsConfig, 'region' | 'iam_endpoint' | 'max_attempts'>, extra: Pick<IAMClientConfig, 'credentials'> = {}): IAMClient {
  const { IAMClient: Client } = iamSdk();
  return new Client({
    ...extra,
    region: settings.region,
    maxAttempts: settings.max_attempts,
    // Bounded: the deny writer holds a role's lock for a minute at most.
    requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 },
    ...(settings.iam_endpoint ? { endpoint: settings.iam_endpoint } : {}),
  });
}
