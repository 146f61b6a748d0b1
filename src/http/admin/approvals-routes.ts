import { Type } from '@sinclair/typebox';
import type { ApprovalDecisions } from '../../approvals/decisions.js';
import { LeashError } from '../../errors/leash-error.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';

const ApprovalState = Type.Union([Type.Literal('pending'), Type.Literal('approved'), Type.Literal('denied'), Type.Literal('used')]);

export const ListApprovalsQuery = Type.Object({
  state: Type.Optional(ApprovalState),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'a whole number from 1 to 1000' })),
});

/** An empty body is fine; otherwise at most a printable, non-blank `reason`. */
export const DecisionBody = Type.Object(
  { reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500, pattern: '^[^\\p{Cc}]*[^\\p{Cc}\\s][^\\p{Cc}]*$', description: '1 to 500 printable characters' })) },
  { additionalProperties: false },
);

/**
 * `GET /admin/approvals[?state=&limit=]`, `GET /admin/approvals/{id}`,
 * `POST /admin/approvals/{id}/approve|deny` (body `{reason?}`). Any authenticated admin
 * gets past the shape; ApprovalDecisions decides (role `security` or an approver group,
 * separation of duties), and its refusals are audited like the shape's. The person an agent
 * acted for may read and decide, with their own token, an approval made on their behalf
 * (`persons`); a person asking for the list is refused (403).
 */
export const APPROVAL_ROUTES = {
  list: { route: 'approvals.list', method: 'GET', path: '/admin/approvals', roles: 'authenticated', query: ListApprovalsQuery, persons: true },
  get: { route: 'approvals.get', method: 'GET', path: '/admin/approvals/:id', roles: 'authenticated', persons: true },
  approve: { route: 'approvals.approve', method: 'POST', path: '/admin/approvals/:id/approve', roles: 'authenticated', body: DecisionBody, bodyOptional: true, persons: true },
  deny: { route: 'approvals.deny', method: 'POST', path: '/admin/approvals/:id/deny', roles: 'authenticated', body: DecisionBody, bodyOptional: true, persons: true },
} as const satisfies Record<string, AdminRouteSpec>;

export function approvalRoutes(deps: { approvals: ApprovalDecisions }): AdminRoute[] {
  return [
    adminRoute(APPROVAL_ROUTES.list, async ({ principal, query }) => {
      const limit = query.limit === undefined ? 100 : Number(query.limit);
      if (!(limit >= 1 && limit <= 1000)) throw new LeashError('ERR_ADMIN_INVALID', 'limit must be a whole number from 1 to 1000');
      return { body: { approvals: await deps.approvals.list(principal, query.state, limit) } };
    }),
    adminRoute(APPROVAL_ROUTES.get, async ({ principal, params }) => ({ body: await deps.approvals.get(principal, params.id as string) })),
    adminRoute(APPROVAL_ROUTES.approve, async ({ principal, params, body }) => ({ body: await deps.approvals.decide(principal, params.id as string, 'approved', body.reason) })),
    adminRoute(APPROVAL_ROUTES.deny, async ({ principal, params, body }) => ({ body: await deps.approvals.decide(principal, params.id as string, 'denied', body.reason) })),
  ];
}
