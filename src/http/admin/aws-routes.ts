import { Router } from 'express';
import { Type } from '@sinclair/typebox';
import { awsRolesOf, denyRoleSessions, type DenyRoleSessionsDeps } from '../../issuance/aws-sts/deny-role-sessions.js';
import { adminRoute, serveAdminRoutes, type AdminRoute, type AdminRouteDeps, type AdminRouteSpec } from './route.js';
import { RequiredReason } from './schemas.js';

export { awsRolesOf };

export const DenySessionsBody = Type.Object(
  { role_arn: Type.String({ minLength: 1, maxLength: 2048, description: 'an IAM role ARN some aws-sts grant names' }), reason: RequiredReason },
  { additionalProperties: false },
);

/**
 * `POST /admin/aws/deny-sessions` `{ role_arn, reason }` (role `security`): the AWS
 * emergency brake (issuance/aws-sts/deny-role-sessions.ts).
 */
export const AWS_ROUTES = {
  denySessions: { route: 'aws.deny_sessions', method: 'POST', path: '/admin/aws/deny-sessions', roles: ['security'], body: DenySessionsBody },
} as const satisfies Record<string, AdminRouteSpec>;

export function awsRoutes(deps: DenyRoleSessionsDeps): AdminRoute[] {
  return [
    adminRoute(AWS_ROUTES.denySessions, async ({ principal, body }) => {
      const result = await denyRoleSessions(deps, { roleArn: body.role_arn, reason: body.reason.trim(), actor: principal.id });
      return {
        body: {
          role_arn: body.role_arn,
          policy_name: result.policyName,
          denied_before: result.before,
          note: `every session of this role issued before ${result.before} is denied; remove the inline policy ${result.policyName} once those sessions have expired`,
        },
      };
    }),
  ];
}

/** The AWS admin routes alone, for mounting at `/admin/aws` (tests of the brake without a broker). */
export function awsAdminRouter(deps: AdminRouteDeps & DenyRoleSessionsDeps): Router {
  const router = Router();
  serveAdminRoutes(router, awsRoutes(deps), deps, { mountedAt: '/admin/aws' });
  return router;
}
