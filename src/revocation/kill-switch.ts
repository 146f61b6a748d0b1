import type { AuditSink } from '../audit/recorder.js';
import type { Revocation, RevocationScope } from '../store/records.js';
import type { RevocationService, RevokeOptions } from './revocation-service.js';

/**
 * The security controls an admin pulls by hand: suspend or resume a plugin (the kill
 * switch), revoke by scope. Each is the revocation first, then its audit event.
 */
export interface KillSwitchDeps {
  readonly revocation: RevocationService;
  readonly audit: AuditSink;
}

/** Revokes the plugin's live credentials and refuses it new ones; `changed` is false when it already was suspended (still audited). */
export async function suspendPlugin(deps: KillSwitchDeps, plugin: string, by: RevokeOptions): Promise<{ changed: boolean }> {
  const { changed } = await deps.revocation.suspend(plugin, by);
  await deps.audit.record('plugin.suspended', { plugin, actor: by.actor, reason: by.reason, already: !changed });
  return { changed };
}

/** Lets a suspended plugin get credentials again; audited only when it was suspended. */
export async function resumePlugin(deps: KillSwitchDeps, plugin: string, by: RevokeOptions): Promise<{ changed: boolean }> {
  const { changed } = await deps.revocation.resume(plugin, by);
  if (changed) await deps.audit.record('plugin.resumed', { plugin, actor: by.actor, reason: by.reason });
  return { changed };
}

/** One revocation by scope (the revocation view audits it as `token.revoked`). */
export function revokeByScope(revocation: RevocationService, scope: RevocationScope, id: string, by: RevokeOptions): Promise<Revocation> {
  switch (scope) {
    case 'token':
      return revocation.revokeToken(id, by);
    case 'task':
      return revocation.revokeTask(id, by);
    case 'plugin':
      return revocation.revokePlugin(id, by);
    case 'key':
      return revocation.revokeKey(id, by);
  }
}
