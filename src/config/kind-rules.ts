import type { ConfigProblem } from './config-error.js';
import { ISSUER_KINDS, TRUSTED_ISSUER_FIELDS, type IssuerKind } from './schema.js';

/**
 * What each trusted-issuer kind demands of its own config and of the bindings that use
 * it. Several issuers vouch for strangers as readily as for you: every repository on
 * GitLab, every Google account, every AWS account. A binding to such an issuer that does
 * not pin *your* project, service account or account would hand the plugin to anyone, so
 * it is a validation error, not a warning (docs/attestation.md lists each kind's rule).
 * Reads the config defensively: the schema reports wrong shapes.
 */

type Rec = Readonly<Record<string, unknown>>;
const rec = (v: unknown): Rec => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Rec) : {});
const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** STS accepts a SigV4 signature for 15 minutes. */
const AWS_MAX_SIGNATURE_AGE = 900;
const AZURE_TENANT_ISSUER =
  /^https:\/\/(login\.microsoftonline\.com\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/v2\.0|sts\.windows\.net\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/)$/;

/**
 * Issuers shared by every customer of a platform, and the kind that carries their
 * mandatory binding rules. The generic `oidc` kind has no such rules, so it refuses them.
 */
const SHARED_ISSUERS: ReadonlyArray<readonly [RegExp, string, string]> = [
  [/^https:\/\/token\.actions\.githubusercontent\.com(\/|$)/, 'github-actions', 'every repository on GitHub'],
  [/^https:\/\/gitlab\.com\/?$/, 'gitlab', 'every project on gitlab.com'],
  [/^https:\/\/accounts\.google\.com\/?$/, 'gcp', 'every Google account and service account'],
  [/^https:\/\/(login\.microsoftonline\.com|sts\.windows\.net)\//, 'azure', 'every application of the tenant'],
];

type Match = { exact: string } | { glob: string } | undefined;
function match(v: unknown): Match {
  if (typeof v === 'string') return { exact: v };
  const m = rec(v);
  if (typeof m.equals === 'string') return { exact: m.equals };
  if (typeof m.glob === 'string') return { glob: m.glob };
  return undefined;
}
const isExact = (m: Match): m is { exact: string } => m !== undefined && 'exact' in m;
const globOf = (m: Match): string | undefined => (m !== undefined && 'glob' in m ? m.glob : undefined);

interface BindingView {
  readonly subject: Match;
  claim(name: string): Match;
}

type BindingRule = (b: BindingView) => string | undefined;

const GITLAB_PROJECT_GLOB = /^project_path:[^*:]+:ref_type:/;
const GITLAB_REF_GLOB = /^project_path:[^*:]+:ref_type:(branch|tag):ref:(.+)$/;
/** Service-account domains of one project; the default compute and service-agent domains are shared by all. */
const GCP_PROJECT_DOMAIN_GLOB = /^[^@]*@(?!gcp-sa-)[a-z0-9-]+\.iam\.gserviceaccount\.com$/;
const AWS_ACCOUNT_GLOB = /^arn:[a-z-]+:(sts|iam)::\d{12}:/;

const BINDING_RULES: Readonly<Record<string, BindingRule>> = {
  gitlab: (b) => {
    const project = isExact(b.subject) || GITLAB_PROJECT_GLOB.test(globOf(b.subject) ?? '') || isExact(b.claim('project_path')) || isExact(b.claim('project_id'));
    const refGlob = GITLAB_REF_GLOB.exec(globOf(b.subject) ?? '')?.[2];
    const claimRef = b.claim('ref');
    const ref =
      isExact(b.subject) ||
      (refGlob !== undefined && refGlob !== '*') ||
      isExact(claimRef) ||
      (globOf(claimRef) !== undefined && globOf(claimRef) !== '*') ||
      (isExact(b.claim('ref_protected')) && (b.claim('ref_protected') as { exact: string }).exact === 'true');
    if (project && ref) return undefined;
    return (
      'a gitlab binding must pin the project and constrain the ref: the issuer signs for every project on the instance. ' +
      'Use an exact subject (\'project_path:group/project:ref_type:branch:ref:main\'), or `claims.project_path` plus `claims.ref` (or `claims.ref_protected: "true"`)'
    );
  },
  gcp: (b) => {
    if (isExact(b.subject) || isExact(b.claim('email')) || isExact(b.claim('unique_id')) || isExact(b.claim('project_id'))) return undefined;
    if (GCP_PROJECT_DOMAIN_GLOB.test(globOf(b.subject) ?? '')) return undefined;
    return (
      'a gcp binding must pin the service account or the project: Google signs for every Google account. ' +
      "Use an exact subject (the service account's email), `claims.unique_id`, `claims.project_id` (Compute Engine), or a subject glob '*@<project>.iam.gserviceaccount.com'"
    );
  },
  azure: (b) => {
    if (isExact(b.subject) || isExact(b.claim('oid')) || isExact(b.claim('xms_mirid'))) return undefined;
    return "an azure binding must pin the workload: use an exact subject (its object id, `oid`) or an exact `claims.xms_mirid` (the managed identity's resource id)";
  },
  aws: (b) => {
    if (isExact(b.subject) || AWS_ACCOUNT_GLOB.test(globOf(b.subject) ?? '') || isExact(b.claim('account')) || isExact(b.claim('role_arn')) || isExact(b.claim('role_id'))) return undefined;
    return (
      'an aws binding must pin the AWS account: STS answers for every account. ' + "Use an exact subject (the caller's ARN), a subject glob starting 'arn:aws:sts::<account>:', or `claims.account`"
    );
  },
};

function bindingView(binding: Rec): BindingView {
  const claims = rec(binding.claims);
  return { subject: match(binding.subject), claim: (n) => (Object.hasOwn(claims, n) ? match(claims[n]) : undefined) };
}

/**
 * Whether exact claims pin the workload of a binding whose subject matches anything: only
 * for kinds with binding rules, when that rule accepts the binding (the review's breadth
 * check defers to it; a bare `*` subject with no such rule stays broad).
 */
export function claimsPinWorkload(kind: string | undefined, binding: unknown): boolean {
  const rule = kind === undefined ? undefined : BINDING_RULES[kind];
  const view = bindingView(rec(binding));
  const exactClaim = Object.keys(rec(rec(binding).claims)).some((n) => isExact(view.claim(n)));
  return rule !== undefined && exactClaim && rule(view) === undefined;
}

/** Problems of trusted issuers and bindings by kind; `asWritten` tells written values from defaults. */
export function kindProblems(root: Rec, asWritten: unknown): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const report = (path: string, message: string) => problems.push({ path, message });
  const production = rec(root.settings).production === true;
  const written = list(rec(asWritten).trusted_issuers);

  const kinds = new Map<string, string>();
  list(root.trusted_issuers).forEach((raw, i) => {
    const t = rec(raw);
    const at = `/trusted_issuers/${i}`;
    const kind = str(t.kind);
    const name = str(t.name);
    if (kind === undefined) return;
    if (name !== undefined && !kinds.has(name)) kinds.set(name, kind);
    const issuer = str(t.issuer) ?? '';
    if (kind === 'aws') {
      if (!/^https?:\/\/[^/?#]+\/?$/.test(issuer)) report(`${at}/issuer`, "must be the STS endpoint's URL, e.g. https://sts.us-east-1.amazonaws.com");
      else if (production && !issuer.startsWith('https://')) report(`${at}/issuer`, 'must be an https:// URL when settings.production is true');
      const age = rec(written[i]).max_token_age;
      if (typeof age === 'number' && age > AWS_MAX_SIGNATURE_AGE) report(`${at}/max_token_age`, `must be at most ${AWS_MAX_SIGNATURE_AGE} for kind 'aws' (STS accepts a signature for 15 minutes)`);
    }
    if (kind === 'azure' && !AZURE_TENANT_ISSUER.test(issuer)) {
      report(
        `${at}/issuer`,
        "must name one tenant: 'https://login.microsoftonline.com/<tenant id>/v2.0' or 'https://sts.windows.net/<tenant id>/' (Entra signs every tenant's tokens with the same keys; 'common' and 'organizations' would accept them all)",
      );
    }
    if (kind === 'oidc') {
      const shared = SHARED_ISSUERS.find(([pattern]) => pattern.test(issuer));
      if (shared) {
        report(`${at}/kind`, `'oidc' cannot be used for ${issuer}: that issuer signs for ${shared[2]}, and only kind '${shared[1]}' refuses bindings that do not pin yours; use kind '${shared[1]}'`);
      }
    }
  });

  list(root.plugins).forEach((rawPlugin, p) => {
    list(rec(rawPlugin).bindings).forEach((rawBinding, b) => {
      const binding = rec(rawBinding);
      const kind = kinds.get(str(binding.issuer) ?? '');
      const rule = kind === undefined ? undefined : BINDING_RULES[kind];
      if (!rule) return;
      const message = rule(bindingView(binding));
      if (message) report(`/plugins/${p}/bindings/${b}`, message);
    });
  });
  return problems;
}

// ---------------------------------------------------------------- keys per kind

/** Why a key that other kinds take means nothing for this one, where "only applies to" would not say enough. */
const NOT_FOR_KIND: Readonly<Partial<Record<IssuerKind, Readonly<Record<string, string>>>>> = {
  aws: {
    jwks: 'STS checks the signature, Leash holds no AWS key',
    algorithms: 'the attestation is a SigV4-signed request, not a JWT',
  },
  'x509-svid': {
    jwks: '(certificates verify against bundle_file)',
    audience: '(a certificate has no audience)',
    algorithms: '(the attestation is a certificate, not a JWT)',
  },
};

/** Why a kind needs a key, when its name does not say. */
const REQUIRED_BECAUSE: Readonly<Record<string, string>> = {
  jwks: "(where the issuer's verification keys come from)",
  bundle_file: "(the trust domain's X.509 CA bundle, PEM)",
};

const isIssuerKind = (kind: string): kind is IssuerKind => (ISSUER_KINDS as readonly string[]).includes(kind);
const quoted = (items: readonly string[]) => items.map((k) => `'${k}'`);
const andList = (items: readonly string[]) => (items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`);

/**
 * The message for a key a trusted issuer of `kind` does not take: which kinds it belongs to,
 * or why it means nothing for this one, or, for a key no kind takes, the keys this kind takes.
 */
export function issuerKeyMessage(kind: string, key: string): string {
  if (!isIssuerKind(kind)) return `unknown key '${key}'`;
  const reason = NOT_FOR_KIND[kind]?.[key];
  if (reason !== undefined) return `does not apply to kind '${kind}'${reason.startsWith('(') ? ` ${reason}` : `: ${reason}`}`;
  const owners = ISSUER_KINDS.filter((k) => TRUSTED_ISSUER_FIELDS[k].includes(key));
  if (owners.length > 0) return `only applies to kind${owners.length === 1 ? '' : 's'} ${andList(quoted(owners))} (this issuer is '${kind}')`;
  return `unknown key '${key}' (allowed for kind '${kind}': ${TRUSTED_ISSUER_FIELDS[kind].join(', ')})`;
}

/** The message for a key the kind requires. */
export function issuerRequiredMessage(kind: string, key: string): string {
  return `is required for kind '${kind}'${REQUIRED_BECAUSE[key] ? ` ${REQUIRED_BECAUSE[key]}` : ''}`;
}
