import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Attestor } from '../attestor.js';
import { copyAttributes, own, requiredString, scalarAttribute } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';

/** A tenant's issuer: v2.0 (`login.microsoftonline.com/{tid}/v2.0`) or v1.0 (`sts.windows.net/{tid}/`). */
export const AZURE_TENANT_ISSUER =
  /^https:\/\/(?:login\.microsoftonline\.com\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/v2\.0|sts\.windows\.net\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/)$/;

const invalid = (claim: string, why: string) => new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${claim}' claim ${why}`, { claim });

/**
 * Microsoft Entra ID access tokens of an application or managed identity (what Azure
 * workload identity, a VM's or an App Service's managed identity gets for Leash's app ID
 * URI). Entra signs every tenant's tokens with the same keys, so only `iss` and `tid` tell
 * tenants apart: the issuer must name one tenant (config validation) and `tid` must be that
 * tenant. The workload is the service principal: the subject is `oid`. A token that acts
 * for a user (it has `scp`) is refused: a workload acts as itself. Attributes: `oid`,
 * `tid`, `app_id` (`azp` in v2.0 tokens, `appid` in v1.0), `xms_mirid` (the managed
 * identity's Azure resource id), `idtyp`, `sub`.
 */
export function createAzureAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const m = AZURE_TENANT_ISSUER.exec(cfg.issuer);
  const tenant = m?.[1] ?? m?.[2];
  if (tenant === undefined) throw new TypeError(`trusted issuer '${cfg.name}': an azure issuer must name one tenant`);
  return createJwtAttestor('azure', cfg, deps, ({ payload }) => {
    const tid = requiredString(payload, 'tid');
    if (tid.toLowerCase() !== tenant) throw invalid('tid', 'is not the tenant of this issuer');
    if (own(payload, 'scp') !== undefined) throw invalid('scp', 'is present: the token acts for a user, not as a workload (use a managed identity or an application token)');
    const idtyp = scalarAttribute(payload, 'idtyp');
    if (idtyp !== undefined && idtyp !== 'app') throw invalid('idtyp', `is '${idtyp.slice(0, 16)}', not 'app'`);
    const oid = requiredString(payload, 'oid');
    const attributes: Array<[string, string]> = [['oid', oid], ['tid', tid], ...copyAttributes(payload, ['xms_mirid', 'idtyp', 'sub'])];
    const appId = scalarAttribute(payload, 'azp') ?? scalarAttribute(payload, 'appid');
    if (appId !== undefined) attributes.push(['app_id', appId]);
    return { subject: oid, attributes };
  });
}
