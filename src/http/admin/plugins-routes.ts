import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/recorder.js';
import { LeashError } from '../../errors/leash-error.js';
import { resumePlugin, revokeByScope, suspendPlugin } from '../../revocation/kill-switch.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { SuspensionStore } from '../../store/store.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';
import { RequiredReason } from './schemas.js';

const PLUGIN_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const ReasonBody = Type.Object({ reason: RequiredReason }, { additionalProperties: false });

export const RevocationBody = Type.Object(
  {
    scope: Type.Union([Type.Literal('token'), Type.Literal('task'), Type.Literal('plugin'), Type.Literal('key')]),
    id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$', description: 'a jti, task id, plugin id or kid' }),
    reason: RequiredReason,
  },
  { additionalProperties: false },
);

/**
 * Security controls (role `security`): the plugin kill switch and direct revocation. Every
 * call says why, and the audit trail records who.
 */
export const PLUGIN_ROUTES = {
  suspend: { route: 'plugins.suspend', method: 'POST', path: '/admin/plugins/:id/suspend', roles: ['security'], body: ReasonBody },
  resume: { route: 'plugins.resume', method: 'POST', path: '/admin/plugins/:id/resume', roles: ['security'], body: ReasonBody },
  suspended: { route: 'plugins.suspended', method: 'GET', path: '/admin/plugins/suspended', roles: ['security'] },
  revoke: { route: 'revocations.add', method: 'POST', path: '/admin/revocations', roles: ['security'], body: RevocationBody },
} as const satisfies Record<string, AdminRouteSpec>;

export interface PluginRouteDeps {
  readonly revocation: RevocationService;
  readonly suspensions: SuspensionStore;
  readonly audit: AuditSink;
  readonly knownPlugin: (id: string) => boolean;
}

export function pluginRoutes(deps: PluginRouteDeps): AdminRoute[] {
  const plugin = (params: Readonly<Record<string, string>>): string => {
    const id = params.id as string;
    if (!PLUGIN_ID.test(id) || !deps.knownPlugin(id)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such plugin');
    return id;
  };
  return [
    adminRoute(PLUGIN_ROUTES.suspend, async ({ principal, params, body }) => {
      const id = plugin(params);
      const { changed } = await suspendPlugin(deps, id, { actor: principal.id, reason: body.reason.trim() });
      return { body: { plugin: id, suspended: true, changed } };
    }),
    adminRoute(PLUGIN_ROUTES.resume, async ({ principal, params, body }) => {
      const id = plugin(params);
      const { changed } = await resumePlugin(deps, id, { actor: principal.id, reason: body.reason.trim() });
      return { body: { plugin: id, suspended: false, changed } };
    }),
    adminRoute(PLUGIN_ROUTES.suspended, async () => {
      const list = await deps.suspensions.listSuspensions();
      return { body: { suspended: list.map((s) => ({ plugin: s.plugin, since: new Date(s.since).toISOString(), actor: s.actor, reason: s.reason })) } };
    }),
    adminRoute(PLUGIN_ROUTES.revoke, async ({ principal, body }) => {
      const r = await revokeByScope(deps.revocation, body.scope, body.id, { actor: principal.id, reason: body.reason.trim() });
      return { status: 201, body: { seq: r.seq, scope: r.scope, id: r.id, revoked_at: new Date(r.revokedAt).toISOString() } };
    }),
  ];
}
