import type { JWTVerifyGetKey } from 'jose';
import { createKeySource } from '../attestation/key-source.js';
import { createJwtVerifier, decodeUnverified, type JwtVerifier } from '../attestation/verify-jwt.js';
import type { FetchLike } from '../attestation/fetch-json.js';
import type { UserIdentityProviderConfig } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { Clock } from '../time/clock.js';

/** A person an agent acts for, as their identity provider vouched for them. */
export interface HumanSubject {
  /** The provider's name in the config. */
  readonly provider: string;
  readonly issuer: string;
  readonly subject: string;
  /** `<issuer>#<sub>`: unique across providers; the `sub` of tokens issued on the person's behalf. */
  readonly qualified: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  /** Seconds since the epoch. */
  readonly expiresAt: number;
}

export interface UserTokens {
  /** Whether any user identity provider is configured. */
  readonly configured: boolean;
  /**
   * Routing only (verification follows): whether a subject_token presented with an
   * actor_token is taken as a person's. A token of Leash or of a workload issuer is not (the
   * delegation step judges it); any other issuer is, and is refused unless configured.
   */
  isPersonToken(token: string): boolean;
  /** Verifies a person's access or ID token; refuses a token of any issuer not configured. */
  verify(token: string): Promise<HumanSubject>;
  /**
   * The person a Leash token was issued for (`sub` of a person-rooted chain), for a further
   * hop: their provider must still be configured (ERR_USER_TOKEN_UNTRUSTED otherwise). Their
   * groups and roles are not carried by Leash tokens, so they are empty: a grant that
   * requires some refuses such a hop (fail closed).
   */
  fromChain(qualified: string, expiresAt: number): HumanSubject;
}

const MAX_LIST = 64;

function stringList(v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string' && x !== '').slice(0, MAX_LIST);
}

/**
 * The trusted user identity providers (OIDC) of one config generation: a human's token is
 * routed by its `iss` to the one provider configured for it and checked like an
 * attestation (signature by the provider's keys, `aud`, algorithms, age, skew).
 */
export function createUserTokens(
  providers: readonly UserIdentityProviderConfig[],
  deps: { clock: Clock; baseDir: string; fetch?: FetchLike; leashIssuer: string; workloadIssuers: readonly string[] },
): UserTokens {
  const notPeople: ReadonlySet<string> = new Set([deps.leashIssuer, ...deps.workloadIssuers]);
  const byIssuer = new Map<string, { cfg: UserIdentityProviderConfig; verify: JwtVerifier }>();
  providers.forEach((cfg, i) => {
    const keys: JWTVerifyGetKey = createKeySource(cfg.jwks, { issuer: cfg.issuer, baseDir: deps.baseDir, fetch: deps.fetch, configPath: `/user_identity_providers/${i}/jwks` });
    byIssuer.set(cfg.issuer, { cfg, verify: createJwtVerifier(cfg, { keys, clock: deps.clock }) });
  });
  return {
    configured: byIssuer.size > 0,
    fromChain(qualified, expiresAt) {
      // `<issuer>#<sub>`: an issuer URL holds no '#' (RFC 3986: that starts a fragment), a sub may.
      const hash = qualified.indexOf('#');
      const found = hash > 0 ? byIssuer.get(qualified.slice(0, hash)) : undefined;
      if (!found) throw new LeashError('ERR_USER_TOKEN_UNTRUSTED', 'the person this chain acts for comes from an identity provider this broker does not trust (any more)');
      const issuer = found.cfg.issuer;
      return Object.freeze({
        provider: found.cfg.name,
        issuer,
        subject: qualified.slice(issuer.length + 1),
        qualified,
        groups: Object.freeze([]),
        roles: Object.freeze([]),
        expiresAt,
      });
    },
    isPersonToken(token) {
      let iss: unknown;
      try {
        iss = decodeUnverified(token).payload.iss;
      } catch {
        return false;
      }
      return typeof iss === 'string' && !notPeople.has(iss);
    },
    async verify(token) {
      const { payload } = decodeUnverified(token);
      const entry = typeof payload.iss === 'string' ? byIssuer.get(payload.iss) : undefined;
      if (!entry) {
        throw new LeashError(
          'ERR_USER_TOKEN_UNTRUSTED',
          byIssuer.size === 0 ? "this broker trusts no user identity provider: a person's token cannot be a subject_token" : "the subject_token's issuer is not a trusted user identity provider",
        );
      }
      const verified = await entry.verify(token);
      const sub = verified.payload.sub;
      if (typeof sub !== 'string' || sub === '') throw new LeashError('ERR_ATTESTATION_CLAIM_MISSING', "the person's token has no 'sub'");
      const { cfg } = entry;
      return Object.freeze({
        provider: cfg.name,
        issuer: cfg.issuer,
        subject: sub,
        qualified: `${cfg.issuer}#${sub}`,
        groups: Object.freeze(stringList(verified.payload[cfg.groups_claim ?? 'groups'])),
        roles: Object.freeze(stringList(verified.payload[cfg.roles_claim ?? 'roles'])),
        expiresAt: verified.expiresAt,
      });
    },
  };
}
