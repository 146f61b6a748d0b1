import type { Mappings } from './frameworks.js';

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Higher is worse. */
export const severityRank = (s: Severity): number => SEVERITIES.length - SEVERITIES.indexOf(s);

export const CATEGORIES = ['identity', 'privilege', 'exceptions', 'chaining', 'use', 'operations'] as const;
export type Category = (typeof CATEGORIES)[number];

/** One review rule: the catalogue in docs/review.md is generated from this table. */
export interface Rule {
  readonly id: string;
  readonly category: Category;
  /** Default severity; a finding may lower it (a toxic path the exchange rules block is `low`). */
  readonly severity: Severity;
  readonly title: string;
  /** Why it matters. */
  readonly rationale: string;
  /** What to do, in general; each finding carries its concrete fix. */
  readonly fix: string;
  /** `policy`: from the policy alone; `history`: needs the store (issuance, denials, approvals); `runtime`: needs the broker's state (keys, suspensions). */
  readonly needs: 'policy' | 'history' | 'runtime';
  readonly mappings: Mappings;
}

const rule = (r: Rule): Rule => Object.freeze(r);

/** Every rule, in catalogue order. Ids are stable: CI baselines and SARIF results refer to them. */
export const RULES: readonly Rule[] = [
  // ---------------------------------------------------------------- shared or broad identity
  rule({
    id: 'broad-binding',
    category: 'identity',
    severity: 'high',
    title: 'Binding matches a whole namespace, repository owner or trust domain',
    rationale:
      'A binding whose subject or claim glob has a bare `*` segment lets every workload in that namespace, owner or trust domain act as the plugin: one shared identity for many workloads, any of which can take its credentials.',
    fix: 'Bind the one workload: an exact subject, or a glob that pins the namespace and the service-account (or repository, or SPIFFE path) prefix.',
    needs: 'policy',
    mappings: { nhi: ['NHI9', 'NHI5'], asi: ['ASI03'], maestro: ['L4'] },
  }),
  rule({
    id: 'ci-binding-unpinned',
    category: 'identity',
    severity: 'high',
    title: 'CI binding without a ref or environment restriction on a state-changing plugin',
    rationale:
      'A GitHub Actions or GitLab CI binding that pins the repository but not the branch, tag or deployment environment lets any branch or pull-request workflow of that repository act as a plugin that can write, send data out or administer.',
    fix: 'Pin the ref or environment: a subject like `repo:<owner>/<repo>:ref:refs/heads/main` or `...:environment:production`, or a `ref` / `environment` claim.',
    needs: 'policy',
    mappings: { nhi: ['NHI6', 'NHI8'], asi: ['ASI03', 'ASI04'], maestro: ['L4'] },
  }),
  rule({
    id: 'split-workload',
    category: 'identity',
    severity: 'medium',
    title: 'Two plugins that look like one workload split in two',
    rationale:
      'Two plugins with the same owner, the same attestation source (namespace, repository) and overlapping grants are usually one workload registered twice: its privileges add up while each plugin looks small.',
    fix: 'Merge them into one plugin with the union of what it needs, or make them distinct workloads with disjoint grants.',
    needs: 'policy',
    mappings: { nhi: ['NHI9'], asi: ['ASI03'], maestro: ['L7'] },
  }),
  rule({
    id: 'plugin-standing-key',
    category: 'identity',
    severity: 'medium',
    title: 'Plugin authenticates with a standing key (private_key_jwt)',
    rationale:
      "A key pair the plugin keeps is a long-lived secret: whoever copies it from a laptop, a vendor's host or a CI variable can sign assertions until someone notices. When the plugin may exchange with its key alone (`client_auth.attestation: optional`) the key is the whole proof of identity; with an attestation beside it, it is a second factor.",
    fix: 'Prefer a platform identity (a Kubernetes service account, a SPIFFE ID, a CI OIDC token) as the attestation; where a key must stay, require the attestation beside it, keep the key in a secret store or hardware, give it an owner and rotate it.',
    needs: 'policy',
    mappings: { nhi: ['NHI7', 'NHI2', 'NHI3'], asi: ['ASI03'], maestro: ['L4'] },
  }),
  rule({
    id: 'shared-audience-scope',
    category: 'identity',
    severity: 'low',
    title: 'The same audience and scope are reachable by many plugins',
    rationale: 'When many plugins hold the same scope at the same API, any of them is a path to it, and the API cannot tell them apart by privilege: compromise of the weakest one is enough.',
    fix: "Keep the scope on the plugins that need it; split the API's scope so each plugin gets a narrower one.",
    needs: 'policy',
    mappings: { nhi: ['NHI5', 'NHI9'], asi: ['ASI03'], maestro: ['L7'] },
  }),
  // ---------------------------------------------------------------- broad privilege
  rule({
    id: 'guardrail-violation',
    category: 'privilege',
    severity: 'high',
    title: 'A grant or plugin breaks a guardrail and no exception covers it',
    rationale:
      "Guardrails are the organisation's limits; a policy that breaks one does not load (`leash validate` and `leash serve` refuse it). The review reports it so a pull request shows it next to the other findings.",
    fix: 'Change the grant or plugin to meet the guardrail, or add a time-boxed exception with a ticket and an owner.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'condition-always-true',
    category: 'privilege',
    severity: 'medium',
    title: 'A grant condition holds whatever the request (a CEL expression that is always true)',
    rationale:
      'A condition is read as a limit: reviewers see `conditions:` on a grant and believe the grant is narrowed. An expression that is true for every request (`true`, `1 == 1`, `x || true`, a test against a constant) narrows nothing, often left over from debugging or a broken edit, so the grant is as broad as if it had no condition.',
    fix: 'Write the limit the condition was meant to express (a claim, a task attribute, the scopes asked for), or remove it so the grant does not look narrower than it is.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'broad-scope',
    category: 'privilege',
    severity: 'high',
    title: 'Wildcard or admin-like scope',
    rationale: 'A scope that contains `*` or names admin, root, all or full access gives the plugin whatever the API decides that means, now and after the API grows.',
    fix: 'Grant the narrow scopes the plugin uses (the "unused-scope" finding, with the store, shows which).',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI03'], maestro: ['L3'] },
  }),
  rule({
    id: 'admin-effect',
    category: 'privilege',
    severity: 'high',
    title: 'Grant with effect `admin`',
    rationale: 'An agent tool that can administer an API (change its configuration, users or permissions) turns one hijacked task into control of the system.',
    fix: 'Split the administrative actions out of the plugin; if they must stay, require `approval: human`, DPoP and a task, with the shortest TTL.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI03'], maestro: ['L3'] },
  }),
  rule({
    id: 'many-scopes',
    category: 'privilege',
    severity: 'medium',
    title: 'Many scopes on one grant',
    rationale: 'A grant with many scopes is rarely used in full; every unused scope is privilege an attacker gets for free.',
    fix: 'Keep the scopes the plugin uses; move rare ones to a separate plugin or an approval-gated grant.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02'], maestro: ['L3'] },
  }),
  rule({
    id: 'long-ttl',
    category: 'privilege',
    severity: 'low',
    title: 'Token lifetime above what the effect needs',
    rationale:
      'A credential lives as long as its TTL whatever the task needed; a stolen one is usable until then. Reads rarely need more than 15 minutes, changes and exfiltration-capable access a few.',
    fix: 'Lower `max_ttl`; the plugin SDK refreshes tokens before they expire.',
    needs: 'policy',
    mappings: { nhi: ['NHI7'], asi: ['ASI03'], maestro: ['L4'] },
  }),
  rule({
    id: 'task-optional-write',
    category: 'privilege',
    severity: 'high',
    title: '`task_required: false` on a state-changing grant',
    rationale: 'A credential bound to no task cannot be revoked with the task, is not counted against its quota and is not tied to any unit of agent work: standing access in all but name.',
    fix: 'Remove `task_required: false`; have the orchestrator open a task for the work.',
    needs: 'policy',
    mappings: { nhi: ['NHI5', 'NHI7'], asi: ['ASI03'], maestro: ['L3'] },
  }),
  rule({
    id: 'no-dpop-high-tier',
    category: 'privilege',
    severity: 'medium',
    title: 'High-tier grant without DPoP',
    rationale: "A bearer token of a high or critical plugin can be replayed by whoever reads it (a log line, a proxy, another tool in the same agent); DPoP binds it to the plugin's key.",
    fix: 'Set `dpop: required` on the grant (or keep the tier in `settings.dpop.required_for_risk`).',
    needs: 'policy',
    mappings: { nhi: ['NHI2', 'NHI4'], asi: ['ASI03', 'ASI07'], maestro: ['L4'] },
  }),
  rule({
    id: 'approval-none-risky',
    category: 'privilege',
    severity: 'high',
    title: '`approval: none` on a write, exfiltrate or admin grant, or on a critical plugin',
    rationale: 'An explicit `approval: none` overrides both the effect default and the risk tier: a critical plugin or one that can change or send data acts with nobody in the loop.',
    fix: 'Remove `approval: none` (the default is a human for these effects and tiers) or use `approval: step-up` with DPoP and a justification.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI09'], maestro: ['L6'] },
  }),
  rule({
    id: 'mcp-tool-unapproved',
    category: 'privilege',
    severity: 'high',
    title: 'An MCP tool that writes, sends data out or administers runs without a human approving each call',
    rationale:
      'A tool with `approval: none` and a state-changing effect lets an agent (or whoever steers it through a prompt) change or send data with nobody looking at the call; with `per_call: false` one session token even runs it any number of times with any arguments.',
    fix: 'Remove `approval: none` from the tool (the default for these effects is a human approving each call, bound to its argument hash), or narrow it with `arguments` tests and keep `per_call`.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI09'], maestro: ['L6'] },
  }),
  rule({
    id: 'mcp-tool-wildcard',
    category: 'privilege',
    severity: 'medium',
    title: 'An MCP grant reaches every tool of the server (`*`)',
    rationale: 'A tool entry named `*` covers every tool the server has and every tool it adds later: the policy no longer says what the plugin can do, and the entries after it never apply.',
    fix: 'List the tools the plugin calls by name (or a narrow prefix glob such as `search_*`), each with its own effect.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI03'], maestro: ['L3'] },
  }),
  // ---------------------------------------------------------------- exceptions
  rule({
    id: 'exception-expired',
    category: 'exceptions',
    severity: 'critical',
    title: 'Expired exception',
    rationale: 'The grant it covered is refused at request time since the expiry; the policy still carries the deviation, so the next change may renew it silently.',
    fix: 'Fix the grant to meet the guardrail and remove the exception, or renew it (a new `expires_at` and a `renewals` entry) with approval.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'exception-expiring',
    category: 'exceptions',
    severity: 'medium',
    title: 'Exception expiring soon',
    rationale: 'When it expires the grant it covers is refused at once; the owner should fix the grant or renew the exception before then.',
    fix: 'Fix the grant, or renew the exception before `expires_at`.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'exception-permanent',
    category: 'exceptions',
    severity: 'high',
    title: 'Temporary exception became permanent',
    rationale: 'An exception renewed again and again, or running for months in total, is a standing widening of policy that nobody decided to make standing.',
    fix: 'Fix the grant, or change the guardrail in the guardrails file if the organisation accepts the risk.',
    needs: 'policy',
    mappings: { nhi: ['NHI5', 'NHI7'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'exception-unaccountable',
    category: 'exceptions',
    severity: 'medium',
    title: 'Exception without a ticket or an owner',
    rationale: 'Nobody is on the hook to remove it and nothing tracks why it exists: it will outlive its reason.',
    fix: 'Set `ticket` and `owner`.',
    needs: 'policy',
    mappings: { nhi: ['NHI1'], asi: [], maestro: ['L6'] },
  }),
  rule({
    id: 'exception-critical-plugin',
    category: 'exceptions',
    severity: 'high',
    title: 'Exception on a critical plugin',
    rationale: 'Guardrails matter most for the plugins whose compromise hurts most; a deviation there deserves the shortest life and the closest look.',
    fix: 'Prefer fixing the grant; otherwise keep the exception short and reviewed by security.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  // ---------------------------------------------------------------- chaining
  rule({
    id: 'toxic-delegation-path',
    category: 'chaining',
    severity: 'high',
    title: 'Delegation path from a sensitive read to exfiltration',
    rationale:
      'Through `delegate_to`, a plugin that reads sensitive data can drive a plugin that can send data out: the lethal combination for a hijacked agent. Severity is `low` when the delegation toxic-combination rules deny it at exchange time and `medium` when they ask a person.',
    fix: 'Remove the delegation edge, or keep (or add) a `settings.delegation.toxic_combinations` rule that denies it.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI08'], maestro: ['L7'] },
  }),
  rule({
    id: 'toxic-task-pair',
    category: 'chaining',
    severity: 'high',
    title: 'Sensitive read and exfiltration can meet in one task',
    rationale:
      'Any two plugins can be put in one task by an orchestrator; without delegation, the chain rules never see them. Severity is `low` when the task-level rule denies the pair at exchange time and `medium` when it asks a person.',
    fix: 'Keep `settings.tasks.toxic_combinations` denying the pair, or split the capabilities so no task needs both.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI02', 'ASI08'], maestro: ['L7'] },
  }),
  rule({
    id: 'cross-system-write-path',
    category: 'chaining',
    severity: 'medium',
    title: 'Delegation path from a read on one system to a write on another',
    rationale:
      "Output read from one API drives a change to another: a poisoned record becomes an action. Severity is `low` when scope narrowing blocks it (the chain's root holds no grant for the written API).",
    fix: 'Remove the delegation edge if the write does not need the read, or gate the write with `approval: human`.',
    needs: 'policy',
    mappings: { nhi: ['NHI5'], asi: ['ASI03', 'ASI08'], maestro: ['L7'] },
  }),
  // ---------------------------------------------------------------- use (from the store)
  rule({
    id: 'unused-plugin',
    category: 'use',
    severity: 'medium',
    title: 'Plugin with no exchange in the review window',
    rationale: 'An identity nobody uses is an offboarding candidate: it keeps its grants and bindings, and nobody would notice it being used by someone else.',
    fix: 'Disable or remove the plugin; its owner can ask for it back.',
    needs: 'history',
    mappings: { nhi: ['NHI1'], asi: ['ASI10'], maestro: ['L5'] },
  }),
  rule({
    id: 'unused-grant',
    category: 'use',
    severity: 'low',
    title: 'Grant never issued in the review window',
    rationale: 'Least privilege from evidence: access that was never exercised is access the plugin does not need.',
    fix: 'Remove the grant.',
    needs: 'history',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L5'] },
  }),
  rule({
    id: 'unused-scope',
    category: 'use',
    severity: 'low',
    title: 'Scope never issued in the review window',
    rationale: 'Least privilege from evidence, at the scope level: the plugin used the grant, but never this scope.',
    fix: 'Remove the scope from the grant.',
    needs: 'history',
    mappings: { nhi: ['NHI5'], asi: ['ASI03'], maestro: ['L5'] },
  }),
  rule({
    id: 'unanswered-approvals',
    category: 'use',
    severity: 'medium',
    title: "Approvals for an owner's plugins go unanswered",
    rationale: 'An owner who no longer approves or answers is an owner in name only; requests time out, and the pressure grows to set `approval: none`.',
    fix: 'Name an owner who answers (or an approver group), or retire the plugin.',
    needs: 'history',
    mappings: { nhi: ['NHI1'], asi: ['ASI09'], maestro: ['L6'] },
  }),
  rule({
    id: 'repeated-denials',
    category: 'use',
    severity: 'medium',
    title: 'Repeated denials',
    rationale: 'A plugin refused again and again for the same reason is broken, misconfigured or probing what it can reach.',
    fix: 'Look at the denial reason: fix the plugin or the policy, or suspend the plugin if it is probing.',
    needs: 'history',
    mappings: { nhi: [], asi: ['ASI01', 'ASI10'], maestro: ['L5'] },
  }),
  rule({
    id: 'quota-breach',
    category: 'use',
    severity: 'medium',
    title: 'Quota breaches',
    rationale: 'A plugin that runs into its quota is looping, overloaded or abused; quotas stop the bill, the finding asks why.',
    fix: 'Find the task that looped; raise the quota only if the load is expected.',
    needs: 'history',
    mappings: { nhi: [], asi: ['ASI02', 'ASI08'], maestro: ['L5'] },
  }),
  rule({
    id: 'stale-suspension',
    category: 'use',
    severity: 'medium',
    title: 'Plugin suspended for long, neither resumed nor removed',
    rationale: 'A kill switch is an emergency stop, not a way to keep an identity around: a plugin suspended for weeks should be removed or brought back deliberately.',
    fix: 'Remove the plugin from policy, or resume it after the cause is fixed.',
    needs: 'runtime',
    mappings: { nhi: ['NHI1'], asi: ['ASI10'], maestro: ['L6'] },
  }),
  // ---------------------------------------------------------------- operations
  rule({
    id: 'admin-key-broad',
    category: 'operations',
    severity: 'medium',
    title: 'Admin API key with many roles',
    rationale: 'One key that can open tasks, rotate keys, approve requests and revoke is a long-lived secret whose theft is total; roles exist so keys hold one each.',
    fix: 'Give each caller its own key with the one role it needs, or use admin JWTs from your identity provider.',
    needs: 'policy',
    mappings: { nhi: ['NHI5', 'NHI7'], asi: ['ASI03'], maestro: ['L6'] },
  }),
  rule({
    id: 'admin-key-no-rotation',
    category: 'operations',
    severity: 'medium',
    title: 'Admin API key without a rotation date, or past it',
    rationale: 'Admin API keys are long-lived secrets; without a date nothing makes anyone rotate them.',
    fix: 'Set `rotate_by` on the key and rotate it by then (new key, new hash, remove the old one).',
    needs: 'policy',
    mappings: { nhi: ['NHI7'], asi: [], maestro: ['L6'] },
  }),
  rule({
    id: 'shared-secret-client',
    category: 'operations',
    severity: 'low',
    title: 'Resource server authenticates with a shared secret',
    rationale: 'A client secret is a long-lived shared secret both sides hold; `private_key_jwt` keeps the private key with the resource server alone.',
    fix: 'Give the resource server a key pair and set `jwks` instead of `client_secret_sha256`.',
    needs: 'policy',
    mappings: { nhi: ['NHI4', 'NHI7'], asi: [], maestro: ['L4'] },
  }),
  rule({
    id: 'http-issuer',
    category: 'operations',
    severity: 'high',
    title: 'Plain http issuer or key source',
    rationale: 'Tokens, discovery and JWKS over plain http can be read and replaced on the way: an attacker can substitute keys or steal credentials.',
    fix: 'Use https:// for `settings.issuer`, trusted issuers and JWKS URLs, and set `settings.production: true`.',
    needs: 'policy',
    mappings: { nhi: ['NHI4'], asi: ['ASI07'], maestro: ['L4'] },
  }),
  rule({
    id: 'volatile-store',
    category: 'operations',
    severity: 'high',
    title: 'Volatile store',
    rationale: 'An in-memory store loses revocations, approvals and the audit trail on restart: a revoked token comes back to life.',
    fix: 'Use a SQLite file on a persistent volume, or Redis with persistence.',
    needs: 'policy',
    mappings: { nhi: ['NHI1'], asi: [], maestro: ['L4', 'L5'] },
  }),
  rule({
    id: 'key-rotation-overdue',
    category: 'operations',
    severity: 'medium',
    title: 'Signing key older than its rotation period',
    rationale: 'A signing key past `key_lifetime` has signed more tokens for longer than planned, widening what a key compromise exposes; scheduled rotation is off or failing.',
    fix: 'Rotate now (`leash keys rotate`), and keep `settings.keys.rotate_on_schedule: true`.',
    needs: 'runtime',
    mappings: { nhi: ['NHI7'], asi: [], maestro: ['L4'] },
  }),
];

export const RULES_BY_ID: ReadonlyMap<string, Rule> = new Map(RULES.map((r) => [r.id, r]));

export function ruleById(id: string): Rule {
  const r = RULES_BY_ID.get(id);
  if (!r) throw new TypeError(`unknown review rule '${id}'`);
  return r;
}
