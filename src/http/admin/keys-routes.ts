import { Type } from '@sinclair/typebox';
import type { AuditSink } from '../../audit/recorder.js';
import { LeashError } from '../../errors/leash-error.js';
import { retireKey, rotateKey, type KeyChange, type KeyOperationDeps } from '../../key-lifecycle/key-operations.js';
import { KeyOperationError, type KeyInfo, type KeyManager, type KeyTransition } from '../../keys/key-manager.js';
import type { Metrics } from '../../metrics/metrics.js';
import { revokeSigningKey } from '../../revocation/revoke-signing-key.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { Clock } from '../../time/clock.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';
import { RequiredReason } from './schemas.js';

/** RFC 7638 thumbprints are 43 base64url characters; anything outside this cannot be a kid. */
const KID = /^[A-Za-z0-9_-]{1,128}$/;

export const RotateBody = Type.Object({ reason: Type.Optional(RequiredReason), force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
export const RetireBody = Type.Object({ reason: Type.Optional(RequiredReason) }, { additionalProperties: false });
export const RevokeKeyBody = Type.Object({ reason: RequiredReason }, { additionalProperties: false });

/**
 * Signing-key operations: list (ops or security), rotate and retire (ops), emergency revoke
 * (security). Every change is audited per transition (key.*), every failure as
 * key.rotation_failed; a refusal by the rotation rules is a 409 with the rule's message,
 * a backend that cannot be reached a 503 that never carries the backend's own text.
 */
export const KEY_ROUTES = {
  list: { route: 'keys.list', method: 'GET', path: '/admin/keys', roles: ['ops', 'security'] },
  rotate: { route: 'keys.rotate', method: 'POST', path: '/admin/keys/rotate', roles: ['ops'], body: RotateBody, bodyOptional: true },
  retire: { route: 'keys.retire', method: 'POST', path: '/admin/keys/:kid/retire', roles: ['ops'], body: RetireBody, bodyOptional: true },
  revoke: { route: 'keys.revoke', method: 'POST', path: '/admin/keys/:kid/revoke', roles: ['security'], body: RevokeKeyBody },
} as const satisfies Record<string, AdminRouteSpec>;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** One key as the admin API shows it (times ISO-8601, null when not applicable). */
export function keyView(k: KeyInfo, now: number) {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    backend: k.backend,
    created_at: iso(k.createdAt),
    activated_at: iso(k.activatedAt),
    retired_at: iso(k.retiredAt),
    remove_at: iso(k.removeAt),
    signs_from: iso(k.signsFrom),
    age_seconds: Math.max(0, Math.floor((now - k.createdAt) / 1000)),
  };
}

const transitionView = (t: KeyTransition) => ({ action: t.action, kid: t.kid, from: t.from ?? null, to: t.to });

/** A refusal by the rotation rules in the admin API's words: `conflict` names the rule, for scripts. */
export async function translated<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!(err instanceof KeyOperationError)) throw err;
    if (err.code === 'unknown_kid') throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such key in the JWKS');
    throw new LeashError('ERR_ADMIN_CONFLICT', err.message, { code: err.code }, { fields: { conflict: err.code } });
  }
}

export interface KeyRouteDeps {
  readonly keys: KeyManager;
  readonly revocation: RevocationService;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly clock: Clock;
}

export function keyRoutes(deps: KeyRouteDeps): AdminRoute[] {
  const ops: KeyOperationDeps = deps;
  const kidOf = (params: Readonly<Record<string, string>>): string => {
    const kid = params.kid as string;
    if (!KID.test(kid) || !deps.keys.list().some((k) => k.kid === kid)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such key in the JWKS');
    return kid;
  };
  const answer = (change: KeyChange, extra: Record<string, unknown>) => {
    const now = deps.clock.now();
    return {
      body: {
        ...extra,
        ...(change.warning ? { warning: change.warning } : {}),
        transitions: change.transitions.map(transitionView),
        keys: deps.keys.list().map((k) => keyView(k, now)),
      },
    };
  };
  return [
    adminRoute(KEY_ROUTES.list, async () => {
      const now = deps.clock.now();
      return { body: { backend: deps.keys.backend, keys: deps.keys.list().map((k) => keyView(k, now)) } };
    }),
    adminRoute(KEY_ROUTES.rotate, async ({ principal, body }) => {
      const force = body.force === true;
      const change = await translated(() => rotateKey(ops, { actor: principal.id, reason: body.reason?.trim(), force }));
      return answer(change, { forced: force });
    }),
    adminRoute(KEY_ROUTES.retire, async ({ principal, params, body }) => {
      const kid = kidOf(params);
      const change = await translated(() => retireKey(ops, kid, { actor: principal.id, reason: body.reason?.trim() }));
      return answer(change, { kid });
    }),
    adminRoute(KEY_ROUTES.revoke, async ({ principal, params, body }) => {
      const kid = kidOf(params);
      const change = await translated(() => revokeSigningKey({ ...ops, revocation: deps.revocation }, kid, { actor: principal.id, reason: body.reason.trim() }));
      return answer(change, { kid, revocation: { seq: change.revocation.seq, revoked_at: new Date(change.revocation.revokedAt).toISOString() } });
    }),
  ];
}
