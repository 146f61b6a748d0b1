import { mayDecide, ownsPlugin, type ApprovalView } from '../../approvals/decisions.js';
import type { ApprovalSettingsConfig } from '../../config/schema.js';
import type { CompiledPolicy } from '../../policy/types.js';
import { actionForm, button, h, idOf, reasonField, type Viewer } from './html.js';

/** What the inbox shows: the approvals (newest first, every state) and what decides the buttons. */
export interface InboxInput {
  readonly approvals: readonly ApprovalView[];
  readonly settings: ApprovalSettingsConfig;
  readonly policy: CompiledPolicy;
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

/** Why this viewer may not approve (separation of duties, or no approver rights), or undefined. */
export function approveBlocked(viewer: Viewer, a: ApprovalView, input: InboxInput): string | undefined {
  if (!mayDecide(viewer.principal, input.settings)) return "Approvals need the 'security' role or membership of an approver group.";
  const plugin = str(a.plugin) ?? '';
  const owner = str(a.owner) ?? '';
  if (ownsPlugin(viewer.principal, { plugin, owner }, input.policy)) return `Separation of duties: you own plugin '${plugin}' (${owner}); another approver must decide.`;
  return undefined;
}

/** The delegation chain (plugin ids, root first) as one line. */
function chainText(chain: unknown): string {
  if (!Array.isArray(chain) || chain.length === 0) return '';
  return chain.filter((hop): hop is string => typeof hop === 'string').join(' → ');
}

/** How often this plugin asked before, and what was decided (from the approvals listed). */
function history(plugin: string, id: string, all: readonly ApprovalView[]): string {
  const before = all.filter((a) => a.plugin === plugin && a.id !== id);
  if (before.length === 0) return 'First request of this plugin in the recent history.';
  const by = (state: string) => before.filter((a) => a.state === state || (state === 'approved' && a.state === 'used')).length;
  return `${before.length} earlier ${before.length === 1 ? 'request' : 'requests'}: ${by('approved')} approved, ${by('denied')} denied, ${by('pending')} pending.`;
}

function pendingCard(viewer: Viewer, a: ApprovalView, input: InboxInput): string {
  const id = String(a.id);
  const key = idOf(id);
  const tool = a.tool_call as { tool?: string; arguments?: unknown; arguments_sha256?: string } | undefined;
  const facts: Array<[string, string]> = [
    ['Plugin', `<a href="/console/plugins#plugin-${h(idOf(String(a.plugin)))}">${h(a.plugin)}</a>`],
    ['Owner', h(a.owner)],
    ['Risk tier', `<span class="badge risk-${h(a.risk)}">${h(a.risk)}</span>`],
    ['Audience', `<code>${h(a.audience)}</code>`],
    ['Scopes', Array.isArray(a.scopes) ? a.scopes.map((s) => `<code>${h(s)}</code>`).join(' ') : ''],
    ['TTL', `${h(a.ttl)} s`],
    ['Effect / kind', `${h(a.effect)} · ${h(a.kind)}`],
    ['Task', str(a.task) ? `<a href="/console/tasks/${h(encodeURIComponent(str(a.task) as string))}">${h(a.task)}</a>` : '<span class="muted">none</span>'],
    ['Justification', a.justification ? h(a.justification) : '<span class="muted">none given</span>'],
  ];
  const chain = chainText(a.chain);
  if (chain) facts.push(['Delegation chain', h(chain)]);
  if (a.on_behalf_of) facts.push(['On behalf of', h(a.on_behalf_of)]);
  if (tool?.tool) facts.push(['Tool call', `<code>${h(tool.tool)}</code> <code>${h(JSON.stringify(tool.arguments ?? {}))}</code>`]);
  if (a.cause) facts.push(['Why approval', h(a.cause)]);
  facts.push(['Requested', `${h(a.requested_at)} · expires ${h(a.expires_at)}`]);
  facts.push(['History', h(history(String(a.plugin), id, input.approvals))]);
  const blocked = approveBlocked(viewer, a, input);
  const denyBlocked = mayDecide(viewer.principal, input.settings) ? undefined : "Approvals need the 'security' role or membership of an approver group.";
  // Deny comes first: pressing Enter in the reason field sends the first button, and a slip must not approve.
  const form = actionForm(
    viewer,
    `/console/approvals/${encodeURIComponent(id)}/deny`,
    `${reasonField(`reason-${key}`, { required: false })}
${button({ label: 'Deny', cls: 'danger', formaction: `/console/approvals/${encodeURIComponent(id)}/deny`, why: denyBlocked, id: `deny-${key}` })}
${button({ label: 'Approve', cls: 'approve', formaction: `/console/approvals/${encodeURIComponent(id)}/approve`, why: blocked, id: `approve-${key}` })}`,
  );
  return `<article class="card approval" id="approval-${h(key)}" aria-labelledby="approval-${h(key)}-h">
<h3 id="approval-${h(key)}-h">${h(a.plugin)} asks for <code>${h(a.audience)}</code> <span class="muted mono">${h(id)}</span></h3>
<dl class="facts">${facts.map(([k, v]) => `<dt>${h(k)}</dt><dd>${v}</dd>`).join('')}</dl>
${form}
</article>`;
}

/** The live part of the inbox (replaced as a whole by the live update). */
export function inboxFragment(viewer: Viewer, input: InboxInput): { html: string; pending: number } {
  const pending = input.approvals.filter((a) => a.state === 'pending' && a.expired !== true);
  const decided = input.approvals.filter((a) => a.state !== 'pending').slice(0, 20);
  const cards = pending.length === 0 ? '<p class="muted">No request is waiting for a decision.</p>' : pending.map((a) => pendingCard(viewer, a, input)).join('\n');
  const rows = decided
    .map(
      (a) =>
        `<tr><td class="mono">${h(a.id)}</td><td>${h(a.plugin)}</td><td><code>${h(a.audience)}</code></td><td>${h(a.state)}</td><td>${h(a.decided_by)}</td><td>${h(a.decision_reason)}</td><td class="mono">${h(a.decided_at)}</td></tr>`,
    )
    .join('');
  const table =
    decided.length === 0
      ? '<p class="muted">No decision yet.</p>'
      : `<table><caption class="muted">The last ${decided.length} decided requests</caption><thead><tr><th scope="col">Approval</th><th scope="col">Plugin</th><th scope="col">Audience</th><th scope="col">State</th><th scope="col">Decided by</th><th scope="col">Reason</th><th scope="col">At</th></tr></thead><tbody>${rows}</tbody></table>`;
  return {
    pending: pending.length,
    html: `<h2 id="pending-h">Pending (${pending.length})</h2>\n${cards}\n<h2>Recent decisions</h2>\n${table}`,
  };
}

export function approvalsPage(viewer: Viewer, input: InboxInput): string {
  const { html } = inboxFragment(viewer, input);
  return `<p class="muted">Requests waiting for a human decision. Approve or deny with a reason; the plugin's next poll gets the credential or <code>access_denied</code>.</p>
<p id="live-status" role="status" aria-live="polite" class="muted"></p>
<section id="inbox" data-live="/console/approvals/events" aria-labelledby="pending-h">
${html}
</section>`;
}
