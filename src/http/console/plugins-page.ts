import type { ApprovalView } from '../../approvals/decisions.js';
import type { ExceptionConfig } from '../../config/schema.js';
import type { CompiledPolicy } from '../../policy/types.js';
import type { Finding } from '../../review/finding.js';
import type { Suspension } from '../../store/records.js';
import { actionForm, button, h, idOf, iso, reasonField, type Viewer } from './html.js';

export interface PluginsInput {
  readonly policy: CompiledPolicy;
  readonly exceptions: readonly ExceptionConfig[];
  readonly suspensions: readonly Suspension[];
  /** Review findings (undefined when the review could not run). */
  readonly findings: readonly Finding[] | undefined;
  /** Recent approvals, as activity. */
  readonly approvals: readonly ApprovalView[];
  /** Why this viewer may not suspend or resume (undefined: may). */
  readonly killSwitchBlocked: string | undefined;
}

export function pluginsPage(viewer: Viewer, input: PluginsInput): string {
  const suspended = new Map(input.suspensions.map((s) => [s.plugin, s]));
  const cards = [...input.policy.plugins.values()]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((p) => {
      const key = idOf(p.id);
      const s = suspended.get(p.id);
      const grants = p.grants
        .map(
          (g) =>
            `<tr><td><code>${h(g.audience)}</code></td><td>${[...g.scopes].map((x) => `<code>${h(x)}</code>`).join(' ')}</td><td>${h(g.effect)}</td><td>${h(g.kind)}</td><td>${h(g.approval)}</td><td>${h(g.maxTtl)} s</td></tr>`,
        )
        .join('');
      const exceptions = input.exceptions.filter((e) => e.plugin === p.id);
      const findings = input.findings?.filter((f) => f.plugin === p.id) ?? [];
      const asked = input.approvals.filter((a) => a.plugin === p.id);
      const state = s
        ? `<span class="badge suspended">suspended</span> since ${h(iso(s.since))} by ${h(s.actor)}: ${h(s.reason)}`
        : p.disabled
          ? '<span class="badge">disabled in policy</span>'
          : '<span class="badge">active</span>';
      const action = s ? 'resume' : 'suspend';
      const form = actionForm(
        viewer,
        `/console/plugins/${encodeURIComponent(p.id)}/${action}`,
        `${reasonField(`${action}-reason-${key}`, { required: true, disabled: input.killSwitchBlocked !== undefined, label: `Reason to ${action} ${p.id}` })}
${button({ label: s ? 'Resume' : 'Suspend (kill switch)', cls: s ? undefined : 'danger', why: input.killSwitchBlocked, id: `${action}-${key}` })}`,
      );
      return `<article class="card" id="plugin-${h(key)}" aria-labelledby="plugin-${h(key)}-h">
<h2 id="plugin-${h(key)}-h">${h(p.id)} <span class="badge risk-${h(p.risk)}">${h(p.risk)}</span></h2>
<dl class="facts"><dt>Owner</dt><dd>${h(p.owner)}</dd><dt>State</dt><dd>${state}</dd>
<dt>Exceptions</dt><dd>${exceptions.length === 0 ? '<span class="muted">none</span>' : exceptions.map((e) => `<code>${h(e.id)}</code> (${h(e.guardrail)}, until ${h(e.expires_at)})`).join('; ')}</dd>
<dt>Findings</dt><dd>${input.findings === undefined ? '<span class="muted">review unavailable</span>' : findings.length === 0 ? 'none' : `<a href="/console/review?plugin=${h(encodeURIComponent(p.id))}">${findings.length} (${h(worst(findings))} worst)</a>`}</dd>
<dt>Recent approvals</dt><dd>${asked.length === 0 ? '<span class="muted">none</span>' : `${asked.length}: ${asked.filter((a) => a.state === 'approved' || a.state === 'used').length} approved, ${asked.filter((a) => a.state === 'denied').length} denied, ${asked.filter((a) => a.state === 'pending').length} pending`}</dd></dl>
<table><caption class="muted">Grants</caption><thead><tr><th scope="col">Audience</th><th scope="col">Scopes</th><th scope="col">Effect</th><th scope="col">Kind</th><th scope="col">Approval</th><th scope="col">Max TTL</th></tr></thead><tbody>${grants}</tbody></table>
${form}
</article>`;
    });
  return `<p class="muted">Every plugin of the policy in force. Suspending one (the kill switch) revokes its live credentials and refuses new ones until it is resumed.</p>
${cards.join('\n')}`;
}

const ORDER = ['critical', 'high', 'medium', 'low'];
const worst = (fs: readonly Finding[]) => ORDER.find((s) => fs.some((f) => f.severity === s)) ?? 'low';
