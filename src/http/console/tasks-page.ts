import type { Task } from '../../store/records.js';
import type { Timeline } from '../../usage/timeline.js';
import { TIMELINE_STYLE, timelineKinds, timelineSvg } from '../../usage/timeline-html.js';
import { actionForm, button, h, iso, type Viewer } from './html.js';

const state = (t: Task, now: number) => (t.state === 'active' && t.expiresAt <= now ? 'expired' : t.state);

export function tasksPage(viewer: Viewer, input: { tasks: readonly Task[]; query: string; now: number; scope: 'all' | 'own' }): string {
  const rows = input.tasks
    .map(
      (t) =>
        `<tr><td><a class="mono" href="/console/tasks/${h(encodeURIComponent(t.id))}">${h(t.id)}</a></td><td>${h(state(t, input.now))}</td><td>${t.plugins.map((p) => `<code>${h(p)}</code>`).join(' ')}</td><td>${h(t.createdBy)}</td><td class="mono">${h(iso(t.createdAt))}</td><td class="mono">${h(iso(t.expiresAt))}</td></tr>`,
    )
    .join('');
  return `<form method="get" action="/console/tasks" class="filters" role="search">
<div><label for="q">Task id, plugin or opener</label><input type="search" id="q" name="q" value="${h(input.query)}" maxlength="128"></div>
<button type="submit">Search</button></form>
<p class="muted">${input.scope === 'own' ? 'Open tasks you opened' : 'Open tasks'}${input.query ? ` matching “${h(input.query)}”` : ''}: ${input.tasks.length}. A task id finds an ended task too.</p>
${
  input.tasks.length === 0
    ? '<p>No task.</p>'
    : `<table><thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Plugins</th><th scope="col">Opened by</th><th scope="col">Opened</th><th scope="col">Expires</th></tr></thead><tbody>${rows}</tbody></table>`
}`;
}

export function taskPage(viewer: Viewer, input: { timeline: Timeline; now: number; endBlocked: string | undefined }): string {
  const { timeline: t } = input;
  const task = t.task;
  const current = state(task, input.now);
  const legend = timelineKinds(t)
    .map((k) => `<li><span class="sw sw-${k}" aria-hidden="true"></span>${h(k)}: ${h(TIMELINE_STYLE[k].label)}</li>`)
    .join('');
  const rows = t.entries
    .map((e) => `<tr><td class="mono">${h(iso(e.at))}</td><td>${h(e.lane)}</td><td>${h(e.kind)}</td><td>${h(e.what)}</td><td>${h(e.who)}</td><td>${e.seq ?? ''}</td></tr>`)
    .join('');
  const end =
    current === 'active'
      ? actionForm(viewer, `/console/tasks/${encodeURIComponent(task.id)}/end`, button({ label: 'End task (revokes its credentials)', cls: 'danger', why: input.endBlocked, id: 'end-task' }))
      : '';
  return `<dl class="facts"><dt>State</dt><dd>${h(current)}</dd><dt>Plugins</dt><dd>${task.plugins.map((p) => `<code>${h(p)}</code>`).join(' ')}</dd>
<dt>Opened</dt><dd>${h(iso(task.createdAt))} by ${h(task.createdBy)}</dd><dt>Expires</dt><dd>${h(iso(task.expiresAt))}</dd>
${task.endedAt !== undefined ? `<dt>Ended</dt><dd>${h(iso(task.endedAt))} by ${h(task.endedBy)}</dd>` : ''}
<dt>Attributes</dt><dd>${
    Object.entries(task.attributes ?? {})
      .map(([k, v]) => `<code>${h(k)}=${h(v)}</code>`)
      .join(' ') || '<span class="muted">none</span>'
  }</dd></dl>
${end}
<h2>Timeline</h2>
<div class="timeline">${timelineSvg(t)}</div>
<ul class="legend">${legend}</ul>
<table><caption class="muted">${t.entries.length} entries${t.truncated ? ' (truncated)' : ''}</caption><thead><tr><th scope="col">Time (UTC)</th><th scope="col">Lane</th><th scope="col">Kind</th><th scope="col">What</th><th scope="col">Who</th><th scope="col">Seq</th></tr></thead><tbody>${rows}</tbody></table>`;
}
