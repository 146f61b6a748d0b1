import type { KoaContextWithOIDC } from 'oidc-provider';
import { toOAuthError } from '../../errors/oauth-error.js';
import { runExchange, type ExchangeDeps } from '../../exchange/exchange.js';
import type { RawParams } from '../../exchange/request.js';
import type { GrantHandler } from './provider.js';
import { clientCredentialsOf, namedClientId } from './token-client.js';
import type { ClientCertificateSource } from '../../mtls/client-certificate.js';
import { clientGone } from '../admission.js';

/**
 * The token-exchange grant as oidc-provider sees it: translate the koa context into an
 * ExchangeInput, run the pipeline, translate the result. No decision is made here.
 */
export function tokenExchangeGrant(deps: ExchangeDeps, tokenEndpoint: string, certificates: ClientCertificateSource): GrantHandler {
  return async (ctx: KoaContextWithOIDC) => {
    const client = ctx.oidc.client;
    const dpop = ctx.req.headersDistinct['dpop'];
    const result = await runExchange(deps, {
      clientId: namedClientId(client?.clientId),
      params: ctx.oidc.params as RawParams,
      dpop: { header: dpop === undefined ? undefined : dpop.length === 1 ? dpop[0] : dpop, method: ctx.method, url: tokenEndpoint },
      clientCredentials: clientCredentialsOf(ctx.req),
      // Read in the pipeline, so an untrusted certificate header is refused and audited like any other input.
      clientCertificate: () => certificates(ctx.req),
      // Checked before signing and before the durable write (the client may have timed out while it waited).
      clientGone: () => clientGone(ctx.res),
    });
    if (result.ok) {
      ctx.body = result.body;
      return;
    }
    const { status, body } = toOAuthError(result.error);
    ctx.status = status;
    ctx.body = body;
  };
}
