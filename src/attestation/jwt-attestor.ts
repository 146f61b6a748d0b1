import type { IssuerKind, TrustedIssuerConfig } from '../config/schema.js';
import type { Clock } from '../time/clock.js';
import type { Attestor, WorkloadIdentity } from './attestor.js';
import type { FetchLike } from './fetch-json.js';
import { createKeySource } from './key-source.js';
import { createJwtVerifier, type VerifiedJwt } from './verify-jwt.js';

/** What every attestor factory receives besides its issuer's config. */
export interface AttestorDeps {
  readonly clock: Clock;
  /** Folder relative JWKS files are resolved against (the config file's folder). */
  readonly baseDir: string;
  readonly fetch?: FetchLike | undefined;
  /** Where this issuer sits in the config (e.g. `/trusted_issuers/2`), for ConfigError paths. */
  readonly configPath?: string | undefined;
}

export type AttestorFactory = (cfg: TrustedIssuerConfig, deps: AttestorDeps) => Attestor;

/** A kind's own part: verified claims → subject and string attributes (throws CLAIM_* errors). */
export type ClaimMapper = (jwt: VerifiedJwt) => { subject: string; attributes: Array<[string, string]> };

/**
 * The shape every kind shares: keys and checks built once from config, then per token one
 * shared verification followed by the kind's claim mapping. The identity is frozen (it may
 * be cached and handed to several requests).
 */
export function createJwtAttestor(kind: IssuerKind, cfg: TrustedIssuerConfig, deps: AttestorDeps, map: ClaimMapper): Attestor {
  // Config validation requires jwks for every JWT kind; reaching here without is a programming error.
  if (cfg.jwks === undefined) throw new TypeError(`trusted issuer '${cfg.name}': kind '${kind}' needs jwks`);
  const keys = createKeySource(cfg.jwks, {
    issuer: cfg.issuer,
    baseDir: deps.baseDir,
    fetch: deps.fetch,
    configPath: deps.configPath === undefined ? undefined : `${deps.configPath}/jwks`,
  });
  const verify = createJwtVerifier(cfg, { keys, clock: deps.clock });
  return Object.freeze({
    name: cfg.name,
    kind,
    issuer: cfg.issuer,
    async verify(token: string, digest: string): Promise<WorkloadIdentity> {
      const jwt = await verify(token);
      const { subject, attributes } = map(jwt);
      return Object.freeze({
        issuer: cfg.name,
        kind,
        subject,
        attributes: Object.freeze(Object.fromEntries(attributes)),
        issuedAt: jwt.issuedAt,
        expiresAt: jwt.expiresAt,
        tokenDigest: digest,
      });
    },
  });
}
