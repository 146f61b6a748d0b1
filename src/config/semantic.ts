import { SINK_FIELDS } from './schema.js';
import type { ConfigProblem } from './config-error.js';
import { checkSessionPolicy } from '../formats/aws-session-policy.js';
import { kindProblems } from './kind-rules.js';
import { SENDER_CONSTRAINABLE_KINDS } from '../formats/token-types.js';

/**
 * Rules the JSON Schema cannot express: uniqueness, cross references, "exactly one of",
 * ordering of limits, production hardening. They run even when the schema found problems,
 * so a person fixes everything in one round; hence the defensive reads below (a value may
 * have the wrong shape, which the schema problems already report).
 *
 * Binding overlap between plugins and repository checks belong to the policy compiler.
 */

type Rec = Readonly<Record<string, unknown>>;
const rec = (v: unknown): Rec => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Rec) : {});
const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const isObject = (v: unknown): boolean => v !== null && typeof v === 'object' && !Array.isArray(v);

type Report = (path: string, message: string) => void;

/** The keys of `o` among `alternatives` that are given (`false` counts only where it means something). */
function given(o: Rec, alternatives: readonly string[], falseIsAbsent: readonly string[] = []): string[] {
  return alternatives.filter((k) => o[k] !== undefined && !(falseIsAbsent.includes(k) && o[k] === false));
}

function exactlyOne(report: Report, path: string, o: Rec, alternatives: readonly string[], falseIsAbsent: readonly string[] = []): void {
  const found = given(o, alternatives, falseIsAbsent);
  if (found.length === 1) return;
  const names = alternatives.map((k) => `'${k}'`).join(', ');
  report(path, found.length === 0 ? `needs exactly one of ${names} (found none)` : `needs exactly one of ${names} (found ${found.map((k) => `'${k}'`).join(' and ')})`);
}

/** Report every later occurrence of a value already seen, pointing back at the first. */
function unique(report: Report, items: readonly unknown[], basePath: string, key: string, what: string): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    const value = str(rec(item)[key]);
    if (value === undefined) return;
    const earlier = first.get(value);
    if (earlier === undefined) first.set(value, i);
    else report(`${basePath}/${i}/${key}`, `duplicate ${what} '${value}' (already used at ${basePath}/${earlier})`);
  });
}

const minutes = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/**
 * `config` is the value after defaults were filled in; `asWritten`, when given, is the value as
 * written, so a message can tell a default the author never wrote from one they did.
 */
export function semanticProblems(config: unknown, asWritten?: unknown): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const report: Report = (path, message) => problems.push({ path, message });
  const root = rec(config);
  const settings = rec(root.settings);

  // ---- settings
  const tokens = rec(settings.tokens);
  const tokenMax = int(tokens.max_ttl);
  const tokenDefault = int(tokens.default_ttl);
  if (tokenMax !== undefined && tokenDefault !== undefined && tokenDefault > tokenMax) {
    report('/settings/tokens/default_ttl', `must not exceed settings.tokens.max_ttl (${tokenDefault} > ${tokenMax})`);
  }
  const tasks = rec(settings.tasks);
  const taskMax = int(tasks.max_ttl);
  const taskDefault = int(tasks.default_ttl);
  if (taskMax !== undefined && taskDefault !== undefined && taskDefault > taskMax) {
    report('/settings/tasks/default_ttl', `must not exceed settings.tasks.max_ttl (${taskDefault} > ${taskMax})`);
  }
  const webhookUrl = str(rec(rec(settings.approvals).webhook).url);
  if (webhookUrl !== undefined && !/^https?:\/\//.test(webhookUrl)) report('/settings/approvals/webhook/url', 'must be an http:// or https:// URL');
  if (settings.production === true) {
    const issuer = str(settings.issuer);
    if (issuer !== undefined && !issuer.startsWith('https://')) report('/settings/issuer', 'must be an https:// URL when settings.production is true');
    const hook = str(rec(rec(settings.approvals).webhook).url);
    if (hook !== undefined && !hook.startsWith('https://'))
      report('/settings/approvals/webhook/url', 'must be an https:// URL when settings.production is true (notices name plugins, tasks and justifications)');
    if (str(rec(settings.store).path) === ':memory:') report('/settings/store/path', "must not be ':memory:' when settings.production is true (state would vanish on restart)");
  }

  // Two servers cannot share one port; port 0 means "any free one" for each.
  const listen = rec(settings.listen);
  const managed = rec(rec(settings.management).listen);
  const wildcard = (h: string | undefined) => h === '0.0.0.0' || h === '::' || h === '';
  const [publicHost, managementHost] = [str(listen.host), str(managed.host)];
  if (int(listen.port) !== undefined && int(listen.port) !== 0 && int(listen.port) === int(managed.port) && (publicHost === managementHost || wildcard(publicHost) || wildcard(managementHost))) {
    report('/settings/management/listen/port', `must differ from settings.listen.port (${int(listen.port)}): the management server has its own port`);
  }

  const tls = rec(settings.tls);
  if (isObject(settings.tls) && tls.client_auth === 'none' && tls.client_ca_file !== undefined) report('/settings/tls/client_ca_file', "only applies when client_auth is 'optional' or 'required'");

  // ---- audit sinks: the fields of their kind, and only those
  const sinks = list(rec(settings.audit).sinks);
  unique(report, sinks, '/settings/audit/sinks', 'name', 'audit sink name');
  sinks.forEach((raw, i) => {
    const sink = rec(raw);
    const kind = str(sink.kind) as keyof typeof SINK_FIELDS | undefined;
    const fields = kind === undefined ? undefined : SINK_FIELDS[kind];
    if (!fields) return;
    for (const f of fields.required) if (sink[f] === undefined) report(`/settings/audit/sinks/${i}/${f}`, `required for a ${kind} sink`);
    const own = new Set([...fields.required, ...fields.optional]);
    for (const other of Object.values(SINK_FIELDS)) {
      for (const f of [...other.required, ...other.optional]) if (!own.has(f) && sink[f] !== undefined) report(`/settings/audit/sinks/${i}/${f}`, `not a field of a ${kind} sink`);
    }
    if (kind === 'webhook' && settings.production === true && str(sink.url)?.startsWith('https://') === false)
      report(`/settings/audit/sinks/${i}/url`, 'must be an https:// URL when settings.production is true');
    if (kind === 'syslog' && settings.production === true && sink.tls === false)
      report(`/settings/audit/sinks/${i}/tls`, 'must not be false when settings.production is true (events would cross the network in clear)');
  });

  const backend = str(rec(settings.keys).backend);
  if ((backend === 'vault-kv' || backend === 'vault-transit') && !isObject(settings.vault)) report('/settings/keys/backend', `'${backend}' needs settings.vault (Leash's Vault address and login)`);

  // ---- admin
  const admin = rec(root.admin);
  const apiKeys = list(admin.api_keys);
  unique(report, apiKeys, '/admin/api_keys', 'id', 'admin api key id');
  // The same secret under two ids would make the audit actor ambiguous.
  unique(report, apiKeys, '/admin/api_keys', 'sha256', 'admin api key hash');
  list(admin.issuers).forEach((issuer, i) => {
    const jwks = rec(rec(issuer).jwks);
    if (isObject(rec(issuer).jwks)) exactlyOne(report, `/admin/issuers/${i}/jwks`, jwks, ['inline', 'file', 'uri', 'discovery'], ['discovery']);
  });

  // ---- the console signs people in with an admin issuer, and verifies the ID token as an admin token
  const consoleSettings = rec(settings.console);
  if (consoleSettings.enabled === true) {
    const issuer = str(consoleSettings.issuer);
    const clientId = str(consoleSettings.client_id);
    if (issuer === undefined) report('/settings/console/issuer', 'required when the console is enabled (the admin issuer people sign in with)');
    if (clientId === undefined) report('/settings/console/client_id', 'required when the console is enabled');
    const adminIssuer = list(admin.issuers)
      .map(rec)
      .find((i) => str(i.issuer) === issuer);
    if (issuer !== undefined && !adminIssuer) report('/settings/console/issuer', `must be one of admin.issuers (${issuer} is not)`);
    if (adminIssuer && clientId !== undefined && str(adminIssuer.audience) !== clientId)
      report('/settings/console/client_id', `must equal the audience of admin issuer ${issuer} (${str(adminIssuer.audience)}): the ID token's audience is the client id`);
    if (settings.production === true && issuer !== undefined && !issuer.startsWith('https://')) report('/settings/console/issuer', 'must be an https:// URL when settings.production is true');
  }

  // ---- people: a human's token must never be mistaken for a workload's or for Leash's own
  const userIdps = list(root.user_identity_providers);
  unique(report, userIdps, '/user_identity_providers', 'name', 'user identity provider name');
  const workloadIssuers = new Set(list(root.trusted_issuers).map((t) => str(rec(t).issuer)));
  userIdps.forEach((raw, i) => {
    const idp = rec(raw);
    const iss = str(idp.issuer);
    if (iss !== undefined && iss === str(settings.issuer)) report(`/user_identity_providers/${i}/issuer`, "must differ from settings.issuer (Leash's own tokens are delegation subject tokens)");
    if (iss !== undefined && workloadIssuers.has(iss)) report(`/user_identity_providers/${i}/issuer`, 'must differ from every trusted issuer: one issuer is either for workloads or for people');
    if (isObject(idp.jwks)) exactlyOne(report, `/user_identity_providers/${i}/jwks`, rec(idp.jwks), ['inline', 'file', 'uri', 'discovery'], ['discovery']);
  });
  const idpNames = new Set(userIdps.map((u) => str(rec(u).name)));
  list(root.plugins).forEach((pl, p) => {
    list(rec(pl).grants).forEach((g, gi) => {
      list(rec(rec(g).users).providers).forEach((name, n) => {
        if (!idpNames.has(str(name))) report(`/plugins/${p}/grants/${gi}/users/providers/${n}`, `no user identity provider is named '${String(name)}'`);
      });
    });
  });

  // ---- resource servers
  const servers = list(root.resource_servers);
  unique(report, servers, '/resource_servers', 'id', 'resource server id');
  servers.forEach((raw, i) => {
    const rs = rec(raw);
    const methods = ['client_secret_sha256', 'jwks'].filter((k) => rs[k] !== undefined);
    if (methods.length !== 1) report(`/resource_servers/${i}`, 'needs exactly one of client_secret_sha256 or jwks (private_key_jwt)');
    if (isObject(rs.jwks)) exactlyOne(report, `/resource_servers/${i}/jwks`, rec(rs.jwks), ['inline', 'file', 'uri'], []);
  });

  // ---- trusted issuers
  const issuers = list(root.trusted_issuers);
  unique(report, issuers, '/trusted_issuers', 'name', 'trusted issuer name');
  const issuerNames = new Set(issuers.map((t) => str(rec(t).name)).filter((n): n is string => n !== undefined));
  issuers.forEach((raw, i) => {
    const t = rec(raw);
    const at = `/trusted_issuers/${i}`;
    if (isObject(t.jwks)) exactlyOne(report, `${at}/jwks`, rec(t.jwks), ['inline', 'file', 'uri', 'discovery'], ['discovery']);
    // Which keys each kind takes, and which it requires, is the schema's (one sub-schema per kind).
    if (t.kind === 'x509-svid') {
      const td = str(t.trust_domain)?.replace(/^spiffe:\/\//, '');
      if (td !== undefined && str(t.issuer) !== undefined && t.issuer !== `spiffe://${td}`) report(`${at}/issuer`, `must be 'spiffe://${td}' for kind 'x509-svid' (the trust domain's SPIFFE ID)`);
    }
    // Leash sends its own credential and every plugin's token to the API server.
    const apiServer = str(rec(t.token_review).api_server);
    if (settings.production === true && apiServer !== undefined && !apiServer.startsWith('https://'))
      report(`${at}/token_review/api_server`, 'must be an https:// URL when settings.production is true');
  });

  // ---- plugins
  const plugins = list(root.plugins);
  unique(report, plugins, '/plugins', 'id', 'plugin id');
  const pluginIds = new Set(plugins.map((p) => str(rec(p).id)).filter((id): id is string => id !== undefined));
  plugins.forEach((raw, p) => {
    const plugin = rec(raw);
    const at = `/plugins/${p}`;
    list(plugin.delegate_to).forEach((target, d) => {
      if (typeof target !== 'string') return;
      if (target === str(plugin.id)) report(`${at}/delegate_to/${d}`, 'a plugin cannot delegate to itself');
      else if (!pluginIds.has(target)) report(`${at}/delegate_to/${d}`, `names no plugin: '${target}'`);
    });
    const clientAuth = rec(plugin.client_auth);
    if (isObject(plugin.client_auth) && isObject(clientAuth.jwks)) {
      exactlyOne(report, `${at}/client_auth/jwks`, rec(clientAuth.jwks), ['inline', 'file', 'uri'], []);
      if (rec(clientAuth.jwks).discovery !== undefined) report(`${at}/client_auth/jwks/discovery`, 'a plugin has no discovery document: give its JWKS as inline, file or uri');
    }
    if (isObject(plugin.client_auth)) clientAuthProblems(report, `${at}/client_auth`, clientAuth, settings);
    list(plugin.bindings).forEach((rawBinding, b) => {
      const binding = rec(rawBinding);
      const bat = `${at}/bindings/${b}`;
      const issuer = str(binding.issuer);
      if (issuer !== undefined && !issuerNames.has(issuer)) {
        report(`${bat}/issuer`, `names no trusted issuer: '${issuer}' (known: ${[...issuerNames].map((n) => `'${n}'`).join(', ') || 'none'})`);
      }
      if (isObject(binding.subject)) exactlyOne(report, `${bat}/subject`, rec(binding.subject), ['equals', 'glob']);
      for (const [claim, match] of Object.entries(rec(binding.claims))) {
        if (isObject(match)) exactlyOne(report, `${bat}/claims/${claim.replace(/~/g, '~0').replace(/\//g, '~1')}`, rec(match), ['equals', 'glob']);
      }
    });

    const audiences = new Map<string, number>();
    list(plugin.grants).forEach((rawGrant, g) => {
      const grant = rec(rawGrant);
      const gat = `${at}/grants/${g}`;
      const audience = str(grant.audience);
      if (audience !== undefined) {
        const earlier = audiences.get(audience);
        if (earlier === undefined) audiences.set(audience, g);
        else report(`${gat}/audience`, `duplicate audience '${audience}' in this plugin (already granted at ${at}/grants/${earlier}); merge the two grants`);
      }
      const scopes = new Set(list(grant.scopes).map(str));
      list(grant.default_scopes).forEach((scope, s) => {
        if (typeof scope === 'string' && !scopes.has(scope)) report(`${gat}/default_scopes/${s}`, `'${scope}' is not one of this grant's scopes`);
      });
      const maxTtl = int(grant.max_ttl);
      if (maxTtl !== undefined && tokenMax !== undefined && maxTtl > tokenMax) {
        const written = asWritten === undefined || rec(list(rec(list(rec(asWritten).plugins)[p]).grants)[g]).max_ttl !== undefined;
        report(
          `${gat}/max_ttl`,
          written
            ? `must not exceed settings.tokens.max_ttl (${maxTtl} > ${tokenMax})`
            : `is missing, and its default (${maxTtl}) exceeds settings.tokens.max_ttl (${tokenMax}): set max_ttl on this grant`,
        );
      }
      list(grant.conditions).forEach((condition, c) => {
        if (!isObject(condition)) return;
        const cond = rec(condition);
        const cat = `${gat}/conditions/${c}`;
        // A CEL expression stands alone; the expression itself is checked by the policy compiler.
        if (cond.expr !== undefined) {
          const beside = given(cond, ['attr', 'equals', 'in', 'glob', 'present']);
          if (beside.length > 0) report(cat, `an 'expr' condition stands alone (found ${beside.map((k) => `'${k}'`).join(' and ')} beside it)`);
          return;
        }
        if (cond.attr === undefined) report(`${cat}/attr`, "is required (or write the condition as an 'expr')");
        exactlyOne(report, cat, cond, ['equals', 'in', 'glob', 'present']);
      });
      const time = rec(grant.time);
      const from = str(time.from);
      const to = str(time.to);
      const hhmm = /^\d\d:\d\d$/;
      if (from !== undefined && to !== undefined && hhmm.test(from) && hhmm.test(to)) {
        if (minutes(to) > 24 * 60) report(`${gat}/time/to`, 'must not be later than 24:00');
        else if (minutes(from) >= minutes(to)) report(`${gat}/time`, `'from' (${from}) must be before 'to' (${to}); windows across midnight are not supported`);
      }
    });
  });

  // ---- credential kinds
  list(root.plugins).forEach((p, i) => {
    list(rec(p).grants).forEach((g, j) => {
      const grant = rec(g);
      const at = `/plugins/${i}/grants/${j}`;
      if (grant.kind === 'aws-sts' && grant.aws === undefined) report(`${at}/aws`, "is required for kind 'aws-sts' (role_arn, actions, resources)");
      if (grant.aws !== undefined && grant.kind !== 'aws-sts') report(`${at}/aws`, "only applies to kind 'aws-sts'");
      const aws = rec(grant.aws);
      if (Array.isArray(aws.actions) && Array.isArray(aws.resources)) {
        const problem = checkSessionPolicy({ actions: aws.actions as string[], resources: aws.resources as string[] });
        if (problem) report(`${at}/aws`, problem);
      }
      // STS API reference, AssumeRoleWithWebIdentity: "Tokens must be signed using either RSA keys
      // (RS256, RS384, or RS512) or ECDSA keys (ES256, ES384, or ES512)". An EdDSA-signed web
      // identity token would be refused by AWS at every exchange; say so at load instead.
      const keyAlgorithm = str(rec(settings.keys).algorithm);
      if (grant.kind === 'aws-sts' && isObject(grant.aws) && (aws.mode ?? 'web-identity') === 'web-identity' && keyAlgorithm === 'EdDSA') {
        report(
          `${at}/aws/mode`,
          "is 'web-identity', which AWS STS accepts only with RSA or ECDSA signatures, but settings.keys.algorithm is 'EdDSA': " +
            "use settings.keys.algorithm 'ES256', or mode 'assume-role' for this grant",
        );
      }
      if (grant.kind === 'vault' && grant.vault === undefined) report(`${at}/vault`, "is required for kind 'vault' (the path that issues the dynamic secret)");
      if (grant.vault !== undefined && grant.kind !== 'vault') report(`${at}/vault`, "only applies to kind 'vault'");
      if (grant.kind === 'vault' && !isObject(settings.vault)) report(`${at}/kind`, "'vault' grants need settings.vault (Leash's Vault address and login)");
      const vault = rec(grant.vault);
      // A read sends no body: parameters there would be silently dropped.
      if ((vault.method ?? 'read') === 'read' && Object.keys(rec(vault.params)).length > 0) report(`${at}/vault/params`, "only applies to method 'write' (a read sends no body)");
      // Requiring DPoP where nothing can be bound would promise what is not delivered.
      if (typeof grant.kind === 'string' && !SENDER_CONSTRAINABLE_KINDS.has(grant.kind) && grant.dpop === 'required') {
        report(`${at}/dpop`, `'${grant.kind}' credentials cannot be sender-constrained; 'required' is not allowed on them`);
      }
      if (typeof grant.kind === 'string' && !SENDER_CONSTRAINABLE_KINDS.has(grant.kind) && rec(grant.step_up).dpop === true) {
        report(`${at}/step_up/dpop`, `'${grant.kind}' credentials cannot be sender-constrained; step-up DPoP is not allowed on them`);
      }
      // `approval: step-up` without `step_up` is fine: it means justification + a 300 s attestation age.
      const su = rec(grant.step_up);
      if (grant.step_up !== undefined && su.max_attestation_age === undefined && su.dpop !== true && su.justification !== true) {
        report(`${at}/step_up`, 'asks for nothing: set max_attestation_age, dpop or justification (or remove it)');
      }
    });
  });

  // ---- per trusted-issuer kind: its own settings, and what its bindings must pin
  problems.push(...kindProblems(root, asWritten));

  return problems;
}

const TLS_SUBJECTS = ['tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email'] as const;

/**
 * A plugin's `client_auth` has what its method needs and nothing another method takes:
 * `private_key_jwt` and `self_signed_tls_client_auth` a JWKS, `tls_client_auth` exactly
 * one `tls_client_auth_*` subject and a CA; the RFC 8705 methods a way for certificates to
 * reach Leash (the files themselves are read when the broker compiles the config).
 */
function clientAuthProblems(report: Report, at: string, auth: Rec, settings: Rec): void {
  const method = str(auth.method);
  const subjects = TLS_SUBJECTS.filter((p) => auth[p] !== undefined);
  if (method !== 'tls_client_auth') {
    for (const p of subjects) report(`${at}/${p}`, `only applies to method tls_client_auth (this plugin uses ${method ?? 'none'})`);
    if (auth.ca_file !== undefined) report(`${at}/ca_file`, `only applies to method tls_client_auth (this plugin uses ${method ?? 'none'})`);
  }
  if ((method === 'private_key_jwt' || method === 'self_signed_tls_client_auth') && !isObject(auth.jwks)) report(`${at}/jwks`, `is required for ${method}`);
  if (method === 'self_signed_tls_client_auth' && rec(auth.jwks).uri !== undefined) report(`${at}/jwks/uri`, 'self_signed_tls_client_auth reads its certificates from an inline or file JWKS');
  if (method !== 'tls_client_auth' && method !== 'self_signed_tls_client_auth') return;
  if (method === 'tls_client_auth') {
    if (auth.jwks !== undefined) report(`${at}/jwks`, 'tls_client_auth takes no jwks: the CA and the registered subject identify the certificate');
    if (subjects.length !== 1) report(at, `tls_client_auth needs exactly one of ${TLS_SUBJECTS.join(', ')} (found ${subjects.length === 0 ? 'none' : subjects.join(', ')})`);
    if (auth.ca_file === undefined && rec(settings.tls).client_ca_file === undefined)
      report(`${at}/ca_file`, 'tls_client_auth needs the CA its certificates chain to: set ca_file or settings.tls.client_ca_file');
  }
  const listener = isObject(settings.tls) ? (str(rec(settings.tls).client_auth) ?? 'optional') : undefined;
  const header = isObject(settings.client_certificate_header);
  if (!header && (listener === undefined || listener === 'none')) {
    report(`${at}/method`, `${method} needs client certificates to reach Leash: set settings.tls.client_auth (optional or required) or settings.client_certificate_header`);
  } else if (method === 'self_signed_tls_client_auth' && !header && listener === 'required') {
    report(`${at}/method`, 'self_signed_tls_client_auth needs settings.tls.client_auth optional (required makes the handshake refuse a self-signed certificate)');
  }
}
