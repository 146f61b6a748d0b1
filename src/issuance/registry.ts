import { CREDENTIAL_KINDS, type AwsSettingsConfig, type CredentialKind } from '../config/schema.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { Clock } from '../time/clock.js';
import { createAwsStsIssuer } from './aws-sts/aws-sts-issuer.js';
import type { CredentialIssuer } from './credential-issuer.js';
import { createJwtIssuer } from './jwt/jwt-issuer.js';
import { createVaultIssuer, type VaultIssuerDeps } from './vault/vault-issuer.js';

/** What the issuers of every kind are built from; each factory takes what its kind needs. */
export interface IssuerDeps {
  /** Leash's issuer URL (`iss` of Leash JWTs and AWS web-identity tokens). */
  readonly issuer: string;
  readonly keys: KeyManager;
  readonly clock: Clock;
  /** `settings.aws`, read per call so a reload applies. */
  readonly aws: () => AwsSettingsConfig;
  /** Leash's Vault session and lease store; absent when `settings.vault` is not set (no `vault` issuer then). */
  readonly vault?: VaultIssuerDeps | undefined;
}

/** Builds the issuer of one kind, or nothing when what it needs is not configured. */
export type IssuerFactory = (deps: IssuerDeps) => CredentialIssuer | undefined;

/** The closed set of credential kinds, one folder each. */
export const ISSUER_FACTORIES: Readonly<Record<CredentialKind, IssuerFactory>> = Object.freeze({
  jwt: (deps) => createJwtIssuer({ issuer: deps.issuer, keys: deps.keys }),
  'aws-sts': (deps) => createAwsStsIssuer({ issuer: deps.issuer, keys: deps.keys, settings: deps.aws, clock: deps.clock }),
  vault: (deps) => (deps.vault ? createVaultIssuer(deps.vault) : undefined),
});

/** The issuer of one kind; an unknown kind is a programming error listing the valid ones. */
export function createIssuer(kind: string, deps: IssuerDeps): CredentialIssuer | undefined {
  if (!Object.hasOwn(ISSUER_FACTORIES, kind)) throw new TypeError(`unknown credential kind '${kind}': valid kinds are ${CREDENTIAL_KINDS.join(', ')}`);
  return ISSUER_FACTORIES[kind as CredentialKind](deps);
}

/** Every issuer the configuration allows, by kind (what the exchange's issue step looks up). */
export function createIssuers(deps: IssuerDeps): ReadonlyMap<CredentialKind, CredentialIssuer> {
  const issuers = new Map<CredentialKind, CredentialIssuer>();
  for (const kind of CREDENTIAL_KINDS) {
    const issuer = createIssuer(kind, deps);
    if (issuer) issuers.set(kind, issuer);
  }
  return issuers;
}
