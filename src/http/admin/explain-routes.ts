import { Type } from '@sinclair/typebox';
import { ConfigError } from '../../config/config-error.js';
import { configDigest, parseConfig, parseConfigText } from '../../config/load.js';
import { LeashError } from '../../errors/leash-error.js';
import { explainEvent, explainExchange, type ExplainDeps, type ExplainRequest } from '../../exchange/explain.js';
import { compilePolicy } from '../../policy/compile.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';

const Param = Type.String({ maxLength: 16_384 });

export const ExplainBody = Type.Object(
  {
    request: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z_]{1,64}$' }), Type.Union([Param, Type.Array(Param, { maxItems: 8 })]), {
        description: 'the token request form as the plugin sends it (grant_type, subject_token, resource, scope, task, ...); a repeated parameter as a list',
      }),
    ),
    claims: Type.Optional(
      Type.Object(
        {
          issuer: Type.String({ minLength: 1, maxLength: 256, description: "a trusted issuer's config name" }),
          subject: Type.String({ minLength: 1, maxLength: 1024 }),
          attributes: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 2048 }))),
          expires_at: Type.Optional(Type.Integer({ minimum: 0 })),
          issued_at: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false, description: 'instead of a real attestation: the workload identity it would give (stated, not verified)' },
      ),
    ),
    task: Type.Optional(
      Type.Object(
        {
          attributes: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 2048 }))),
          plugins: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 })),
        },
        { additionalProperties: false, description: 'a task stated instead of one in the store: its attributes (task.* conditions) and plugins (default: any)' },
      ),
    ),
    dpop: Type.Optional(Type.String({ maxLength: 16_384, description: 'the DPoP header the request would carry' })),
    client_certificate_header: Type.Optional(Type.String({ maxLength: 65_536, description: "the client-certificate header the trusted proxy would add (settings' format)" })),
    policy: Type.Optional(Type.String({ maxLength: 1_048_576, description: 'a whole config file (YAML or JSON) whose policy decides instead of the running one' })),
    event: Type.Optional(Type.Integer({ minimum: 1, description: 'replay this audit event (an exchange) instead of a request' })),
  },
  { additionalProperties: false },
);

/** `POST /admin/explain` (role security): what the exchange would decide, step by step; nothing is issued. */
export const EXPLAIN_ROUTES = {
  explain: { route: 'policy.explain', method: 'POST', path: '/admin/explain', roles: ['security'], body: ExplainBody },
} as const satisfies Record<string, AdminRouteSpec>;

export interface ExplainRouteDeps {
  readonly explain: ExplainDeps;
  /** The running config's folder: a given policy's relative file references resolve as the running config's do. */
  readonly configDir: () => string;
}

/**
 * A given policy, through the config parser and the policy compiler (problems reported with
 * their paths). Deliberately not the file loader: text from an API caller reads no file the
 * config names and takes nothing from the broker's environment, whose values the answer
 * would otherwise show back.
 */
function givenPolicy(text: string, dir: string): NonNullable<ExplainRequest['policy']> {
  try {
    const config = parseConfig(parseConfigText(text, `${dir}/explain-policy`), { baseDir: dir });
    return { compiled: compilePolicy(config), digest: configDigest(Buffer.from(text, 'utf8')) };
  } catch (e) {
    if (e instanceof ConfigError) throw new LeashError('ERR_ADMIN_INVALID', `the given policy does not load: ${e.problems.map((p) => `${p.path || '/'} ${p.message}`).join('; ')}`.slice(0, 2000));
    throw e;
  }
}

export function explainRoutes(deps: ExplainRouteDeps): AdminRoute[] {
  return [
    adminRoute(EXPLAIN_ROUTES.explain, async ({ principal, body }) => {
      if ((body.request === undefined) === (body.event === undefined))
        throw new LeashError('ERR_ADMIN_INVALID', 'send exactly one of `request` (a token request) and `event` (an audit event to replay)');
      if (body.event !== undefined && (body.claims ?? body.task ?? body.dpop ?? body.client_certificate_header) !== undefined) {
        throw new LeashError('ERR_ADMIN_INVALID', 'an event replay takes the request from the event: send `event` (and optionally `policy`) only');
      }
      const policy = body.policy === undefined ? undefined : givenPolicy(body.policy, deps.configDir());
      if (body.event !== undefined) return { body: await explainEvent(deps.explain, body.event, { actor: principal.id, policy }) };
      return {
        body: await explainExchange(deps.explain, {
          params: body.request ?? {},
          claims: body.claims,
          task: body.task,
          dpop: body.dpop,
          clientCertificateHeader: body.client_certificate_header,
          policy,
          actor: principal.id,
        }),
      };
    }),
  ];
}
