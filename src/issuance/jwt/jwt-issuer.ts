import type { KeyManager } from '../../keys/key-manager.js';
import { signJwt } from '../../keys/jws.js';
import type { CredentialIssuer, IssueRequest, IssuedCredential } from '../credential-issuer.js';
import { TOKEN_TYPE_ACCESS_TOKEN } from '../../formats/token-types.js';
import { budgetClaim } from '../../formats/task-budget.js';
import { PERSON_PRINCIPAL } from '../../client/chain-jti.js';
import { randomId } from '../../formats/random-id.js';

/**
 * Leash-signed access tokens (RFC 9068 `at+jwt`). Signed here rather than by
 * oidc-provider so the same SigningKey seam serves local, Vault KV and Vault Transit keys,
 * and so `sub`, `task`, `act` and `cnf` are exactly what policy decided.
 */
export function createJwtIssuer(deps: { issuer: string; keys: KeyManager }): CredentialIssuer {
  return {
    kind: 'jwt',
    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const key = deps.keys.current();
      const iat = Math.floor(req.now / 1000);
      const exp = iat + req.ttl;
      const jti = randomId();
      const scope = req.scopes.join(' ');
      const payload: Record<string, unknown> = {
        iss: deps.issuer,
        // In a delegation the subject is the chain's root (the principal); the actor is in `act`.
        sub: req.delegation?.subject ?? req.onBehalfOf?.subject ?? req.plugin.id,
        aud: req.audience,
        exp,
        iat,
        nbf: iat,
        jti,
        client_id: req.plugin.id,
        scope,
        plugin: req.plugin.id,
        workload: { issuer: req.identity.issuer, sub: req.identity.subject },
      };
      if (req.task) payload.task = req.task.id;
      // The task's budget at this audience, so a resource server can also enforce it locally.
      const budget = budgetClaim(req.task?.budgets, req.audience);
      if (budget) payload.task_budget = budget;
      // RFC 9449 §6.1 and RFC 8705 §3.1: a proof-of-possession key, a certificate, or both.
      if (req.jkt || req.x5t) payload.cnf = { ...(req.jkt ? { jkt: req.jkt } : {}), ...(req.x5t ? { 'x5t#S256': req.x5t } : {}) };
      if (req.delegation) {
        payload.act = req.delegation.act;
        payload.chain_effects = [...req.delegation.effects];
        // Revoking any upstream token by jti then revokes this one too (the cascade).
        payload.chain_jti = [...req.delegation.upstreamJtis];
        if (req.delegation.personRooted) payload.principal = PERSON_PRINCIPAL;
      }
      // For a person: no chain_jti (there is no upstream Leash token); `principal` tells a next hop that `sub` is the person.
      if (req.onBehalfOf) {
        payload.act = req.onBehalfOf.act;
        payload.principal = PERSON_PRINCIPAL;
      }
      if (req.approval) payload.approval = { id: req.approval.id, approver: req.approval.approver, at: req.approval.at };
      if (req.authorizationDetails) payload.authorization_details = req.authorizationDetails;
      const token = await signJwt(key, { typ: 'at+jwt' }, payload);
      return {
        body: {
          access_token: token,
          issued_token_type: TOKEN_TYPE_ACCESS_TOKEN,
          token_type: req.jkt ? 'DPoP' : 'Bearer',
          expires_in: req.ttl,
          scope,
          ...(req.authorizationDetails ? { authorization_details: req.authorizationDetails } : {}),
        },
        record: {
          jti,
          plugin: req.plugin.id,
          task: req.task?.id,
          audience: req.audience,
          scopes: [...req.scopes],
          kind: 'jwt',
          kid: key.kid,
          issuedAt: iat * 1000,
          expiresAt: exp * 1000,
          jkt: req.jkt,
        },
      };
    },
  };
}
