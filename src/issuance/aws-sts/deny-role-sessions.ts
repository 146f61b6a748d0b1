import type { IAMClient } from '@aws-sdk/client-iam';
import type { AuditSink } from '../../audit/recorder.js';
import { LeashError } from '../../errors/leash-error.js';
import type { CompiledPolicy } from '../../policy/types.js';
import type { Clock } from '../../time/clock.js';
import { denySessionsIssuedBefore, DENY_SESSIONS_POLICY_NAME, type DenySessionsResult } from './deny-sessions.js';

/** Every role ARN some `aws-sts` grant of the policy names: the only roles the brake may touch. */
export function awsRolesOf(policy: CompiledPolicy): ReadonlySet<string> {
  const roles = new Set<string>();
  for (const plugin of policy.plugins.values()) {
    for (const grant of plugin.grants) if (grant.kind === 'aws-sts' && grant.config.aws) roles.add(grant.config.aws.role_arn);
  }
  return roles;
}

export interface DenyRoleSessionsDeps {
  /** The policy in force (roles are looked up in it on every call, so reloads apply). */
  readonly policy: () => CompiledPolicy;
  /** Leash's IAM client (its own AWS credentials; see createIamClient). */
  readonly iam: () => IAMClient;
  readonly audit: AuditSink;
  readonly clock: Clock;
}

/**
 * The AWS emergency brake: deny every session of a role issued before now, for every
 * plugin using the role, by an inline IAM policy. Only roles Leash hands out (it is not a
 * general IAM write primitive). Audited as `aws.sessions_denied` with who and why, whether
 * IAM accepted it or not: a responder must know when the brake did not engage.
 */
export async function denyRoleSessions(deps: DenyRoleSessionsDeps, req: { roleArn: string; reason: string; actor: string }): Promise<DenySessionsResult> {
  if (!awsRolesOf(deps.policy()).has(req.roleArn)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no aws-sts grant in the current policy names this role');
  const before = new Date(deps.clock.now());
  const attempt = { role_arn: req.roleArn, actor: req.actor, reason: req.reason, before: before.toISOString(), policy_name: DENY_SESSIONS_POLICY_NAME };
  let result: DenySessionsResult;
  try {
    result = await denySessionsIssuedBefore({ roleArn: req.roleArn, before, reason: req.reason, iam: deps.iam() });
  } catch (err) {
    const code = err instanceof LeashError ? err.code : 'ERR_INTERNAL';
    await deps.audit.record('aws.sessions_denied', { ...attempt, outcome: 'failed', reason_code: code, detail: err instanceof LeashError ? err.detail : undefined }).catch(() => undefined);
    throw err;
  }
  await deps.audit.record('aws.sessions_denied', { ...attempt, outcome: 'applied', request_id: result.requestId });
  return result;
}
