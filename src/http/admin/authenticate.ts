import { createHash, timingSafeEqual } from 'node:crypto';
import { jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { AdminConfig, AdminIssuerConfig, AdminRole } from '../../config/schema.js';
import { ADMIN_ROLES } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Clock } from '../../time/clock.js';

/** Who is calling the admin API, and with which roles. */
export interface AdminPrincipal {
  /** `apikey:<id>` or `jwt:<iss>#<sub>`: what audit events name as the actor. */
  readonly id: string;
  readonly roles: ReadonlySet<AdminRole>;
  /** API-key `groups` or the admin JWT's groups claim: approver groups, separation of duties. */
  readonly groups: ReadonlySet<string>;
  /** A person authenticated by a user identity provider (`<issuer>#<sub>`): may decide approvals made on their behalf only. */
  readonly person?: string;
}

export interface AdminAuthenticator {
  authenticate(authorization: string | undefined): Promise<AdminPrincipal>;
}

interface IssuerVerifier {
  readonly config: AdminIssuerConfig;
  readonly keys: JWTVerifyGetKey;
}

const ROLE_SET: ReadonlySet<string> = new Set(ADMIN_ROLES);

/**
 * Admin callers present `Authorization: Bearer <credential>`: either an API key (compared
 * by SHA-256 in constant time; config holds only hashes) or a JWT from a configured admin
 * issuer. There is no anonymous admin call.
 */
export function createAdminAuthenticator(admin: AdminConfig, deps: { clock: Clock; keyLookup: (cfg: AdminIssuerConfig) => JWTVerifyGetKey }): AdminAuthenticator {
  const apiKeys = admin.api_keys.map((k) => ({ id: k.id, hash: Buffer.from(k.sha256, 'hex'), roles: new Set(k.roles), groups: new Set(k.groups ?? []) }));
  const issuers: IssuerVerifier[] = admin.issuers.map((config) => ({ config, keys: deps.keyLookup(config) }));

  async function viaJwt(token: string): Promise<AdminPrincipal> {
    let iss: unknown;
    try {
      iss = (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: unknown }).iss;
    } catch {
      throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'malformed bearer token');
    }
    const verifier = issuers.find((i) => i.config.issuer === iss);
    if (!verifier) throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'bearer token from an unknown issuer');
    const { config } = verifier;
    try {
      const { payload } = await jwtVerify(token, verifier.keys, {
        issuer: config.issuer,
        audience: config.audience,
        algorithms: [...config.algorithms],
        requiredClaims: ['exp'],
        currentDate: new Date(deps.clock.now()),
      });
      const raw = payload[config.roles_claim];
      const list = typeof raw === 'string' ? raw.split(' ') : Array.isArray(raw) ? raw : [];
      const roles = new Set(list.filter((r): r is AdminRole => typeof r === 'string' && ROLE_SET.has(r)));
      const rawGroups = payload[config.groups_claim ?? 'groups'];
      const groupList = typeof rawGroups === 'string' ? rawGroups.split(' ') : Array.isArray(rawGroups) ? rawGroups : [];
      const groups = new Set(groupList.filter((g): g is string => typeof g === 'string' && g.length > 0));
      const sub = payload[config.subject_claim];
      return { id: `jwt:${config.issuer}#${typeof sub === 'string' ? sub : '?'}`, roles, groups };
    } catch (cause) {
      // The issuer's keys being unreachable is an outage, not a bad credential: fail closed as such.
      if (cause instanceof LeashError && cause.code === 'ERR_ATTESTATION_KEYS_UNAVAILABLE') {
        throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the admin token issuer cannot be reached; retry later', cause.detail, { cause });
      }
      throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'bearer token is not valid', { reason: (cause as { code?: string }).code ?? (cause as LeashError).code }, { cause });
    }
  }

  function viaApiKey(key: string): AdminPrincipal {
    const digest = createHash('sha256').update(key, 'utf8').digest();
    let found: (typeof apiKeys)[number] | undefined;
    // Compare against every key so timing does not reveal which one matched.
    for (const k of apiKeys) if (timingSafeEqual(k.hash, digest)) found = k;
    if (!found) throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'unknown API key');
    return { id: `apikey:${found.id}`, roles: found.roles, groups: found.groups };
  }

  return {
    async authenticate(authorization) {
      const match = /^Bearer ([A-Za-z0-9._~+/=-]{8,4096})$/.exec(authorization ?? '');
      if (!match) throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'send Authorization: Bearer <admin API key or token>');
      const credential = match[1] as string;
      return credential.split('.').length === 3 && issuers.length > 0 ? viaJwt(credential) : viaApiKey(credential);
    },
  };
}

/** Throws ERR_ADMIN_FORBIDDEN unless the principal holds the role (or one of the roles). */
export function requireRole(principal: AdminPrincipal, roles: AdminRole | readonly AdminRole[]): void {
  const list: readonly AdminRole[] = typeof roles === 'string' ? [roles] : roles;
  if (list.some((r) => principal.roles.has(r))) return;
  throw new LeashError('ERR_ADMIN_FORBIDDEN', list.length === 1 ? `this call needs the '${list[0]}' role` : `this call needs one of the roles ${list.map((r) => `'${r}'`).join(', ')}`);
}
