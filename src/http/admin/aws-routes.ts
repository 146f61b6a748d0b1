import express, { Router } from 'express';
import type { IAMClient } from '@aws-sdk/client-iam';
import { LeashError } from '../../errors/leash-error.js';
import type { CompiledPolicy } from '../../policy/types.js';
import { denySessionsIssuedBefore, DENY_SESSIONS_POLICY_NAME } from '../../issuance/aws-sts/deny-sessions.js';
import { admit, type AdminRouteDeps } from './tasks-routes.js';
import { sendAdminError } from './errors.js';

export interface AwsAdminRouteDeps extends AdminRouteDeps {
  /** The policy in force (roles are looked up in it on every call, so reloads apply). */
  readonly policy: () => CompiledPolicy;
  /** Leash's IAM client (its own AWS credentials; see createIamClient). */
  readonly iam: () => IAMClient;
  /** Largest JSON body accepted. */
  readonly maxBodyBytes: () => number;
}

/** Every role ARN some `aws-sts` grant of the policy names: the only roles the action may touch. */
export function awsRolesOf(policy: CompiledPolicy): ReadonlySet<string> {
  const roles = new Set<string>();
  for (const plugin of policy.plugins.values()) {
    for (const grant of plugin.grants) if (grant.kind === 'aws-sts' && grant.config.aws) roles.add(grant.config.aws.role_arn);
  }
  return roles;
}

/**
 * `POST /admin/aws/deny-sessions` `{ role_arn, reason }` (role `security`): the AWS
 * emergency brake. Denies every session of that role issued before now, for every
 * plugin using the role, by an inline IAM policy; audited as `aws.sessions_denied` with
 * who and why, whether IAM accepted it or not.
 */
export function awsAdminRouter(deps: AwsAdminRouteDeps): Router {
  const router = Router();
  router.use((req, res, next) => express.json({ limit: deps.maxBodyBytes(), strict: true })(req, res, next));

  router.post('/deny-sessions', async (req, res) => {
    const route = 'aws.deny_sessions';
    let audit: Record<string, unknown> | undefined;
    try {
      const principal = await admit(deps, req, route, 'security');
      if (!req.is('application/json')) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json');
      const body = req.body as unknown;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_ADMIN_INVALID', 'the body must be a JSON object');
      const unknownKeys = Object.keys(body).filter((k) => k !== 'role_arn' && k !== 'reason');
      if (unknownKeys.length > 0) throw new LeashError('ERR_ADMIN_INVALID', `unknown fields: ${unknownKeys.slice(0, 5).join(', ')}`);
      const { role_arn: roleArn, reason } = body as { role_arn?: unknown; reason?: unknown };
      if (typeof reason !== 'string' || reason.trim().length < 3 || reason.length > 500) {
        throw new LeashError('ERR_ADMIN_INVALID', 'a reason (3 to 500 characters) is required: it goes into the audit trail');
      }
      if (typeof roleArn !== 'string' || roleArn.length > 2048) throw new LeashError('ERR_ADMIN_INVALID', 'role_arn (an IAM role ARN) is required');
      // Only roles Leash hands out: the action is not a general IAM write primitive.
      if (!awsRolesOf(deps.policy()).has(roleArn)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no aws-sts grant in the current policy names this role');

      const before = new Date(deps.clock.now());
      audit = { role_arn: roleArn, actor: principal.id, reason: reason.trim(), before: before.toISOString(), policy_name: DENY_SESSIONS_POLICY_NAME };
      const result = await denySessionsIssuedBefore({ roleArn, before, reason: reason.trim(), iam: deps.iam() });
      await deps.audit.record('aws.sessions_denied', { ...audit, outcome: 'applied', request_id: result.requestId });
      audit = undefined;
      deps.metrics.adminRequests.inc({ route, outcome: 'ok' });
      res.json({
        role_arn: roleArn,
        policy_name: result.policyName,
        denied_before: result.before,
        note: `every session of this role issued before ${result.before} is denied; remove the inline policy ${result.policyName} once those sessions have expired`,
      });
    } catch (err) {
      // A failed attempt is a security event too: the responder must know the brake did not engage.
      if (audit) {
        const code = err instanceof LeashError ? err.code : 'ERR_INTERNAL';
        await deps.audit.record('aws.sessions_denied', { ...audit, outcome: 'failed', reason_code: code, detail: err instanceof LeashError ? err.detail : undefined }).catch(() => undefined);
        deps.metrics.adminRequests.inc({ route, outcome: 'failed' });
      }
      sendAdminError(res, err);
    }
  });

  return router;
}
