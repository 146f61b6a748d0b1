import type Provider from 'oidc-provider';
import type { AuditSink } from '../../audit/recorder.js';
import type { LeashError } from '../../errors/leash-error.js';
import type { Logger } from '../../log/logger.js';
import { NO_PLUGIN, type Metrics } from '../../metrics/metrics.js';
import { namedClientId } from './token-client.js';

export interface ProtocolAuditDeps {
  readonly audit: AuditSink;
  readonly metrics: Pick<Metrics, 'exchanges'>;
  readonly log: Logger;
}

/**
 * Requests refused by the protocol layer before the exchange pipeline ran (unknown client,
 * duplicate or missing parameter, wrong content type) still leave one `exchange.denied`
 * event (reason `ERR_PROTOCOL`) and count as denied exchanges; oidc-provider's own faults
 * are logged.
 */
export function auditProtocolErrors(provider: Provider, deps: ProtocolAuditDeps): void {
  provider.on('server_error', (_ctx, err) => deps.log.error('oauth server error', { error: err.message }));
  provider.on('grant.error', (ctx, err) => {
    void deps.audit
      .record('exchange.denied', { decision: 'denied', reason: 'ERR_PROTOCOL', error: err.error, description: err.error_description, client_id: namedClientId(ctx.oidc?.client?.clientId) })
      .catch(() => undefined);
    // No plugin was resolved: the client_id here is whatever the caller sent.
    deps.metrics.exchanges.inc({ outcome: 'denied', reason: 'ERR_PROTOCOL', plugin: NO_PLUGIN });
  });
}

/** The client gate's refusal (credentials Leash cannot verify): one `exchange.denied` event, counted. */
export function auditClientRefusal(deps: ProtocolAuditDeps): (err: LeashError, clientId: string | undefined) => Promise<void> {
  return async (err, clientId) => {
    deps.metrics.exchanges.inc({ outcome: 'denied', reason: err.code, plugin: NO_PLUGIN });
    await deps.audit.record('exchange.denied', { decision: 'denied', reason: err.code, description: err.description, client_id: clientId, detail: err.detail });
  };
}
