import { escapeHtml } from '../../usage/timeline-html.js';
import type { AdminPrincipal } from '../admin/authenticate.js';

/** Escapes text for HTML content and attribute values (every value from policy, store or request is input). */
export const h = (value: unknown): string =>
  escapeHtml(value === undefined || value === null ? '' : typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value));

/** Who is looking at a page, and the form token their session carries. */
export interface Viewer {
  readonly principal: AdminPrincipal;
  readonly csrf: string;
  readonly flash?: { readonly kind: 'ok' | 'error'; readonly text: string } | undefined;
}

export const PAGES = [
  { path: '/console/approvals', label: 'Approvals' },
  { path: '/console/tasks', label: 'Tasks' },
  { path: '/console/plugins', label: 'Plugins' },
  { path: '/console/review', label: 'Review' },
  { path: '/console/keys', label: 'Keys' },
] as const;

/** The hidden form field every state-changing form carries. */
export const csrfField = (viewer: Viewer) => `<input type="hidden" name="csrf" value="${h(viewer.csrf)}">`;

export const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString().replace('.000Z', 'Z'));

/** A page of the console: one stylesheet, one script, both from /console/assets/. */
export function layout(opts: { title: string; current?: string; viewer?: Viewer; body: string }): string {
  const { viewer } = opts;
  const nav = viewer
    ? `<nav aria-label="Console"><ul>${PAGES.map((p) => `<li><a href="${p.path}"${p.path === opts.current ? ' aria-current="page"' : ''}>${p.label}</a></li>`).join('')}</ul></nav>
<div class="who"><span>Signed in as <strong>${h(viewer.principal.id)}</strong>${viewer.principal.roles.size > 0 ? ` (${h([...viewer.principal.roles].join(', '))})` : ' (no role)'}</span>
<form method="post" action="/console/logout" class="inline">${csrfField(viewer)}<button type="submit">Sign out</button></form></div>`
    : '';
  const flash = viewer?.flash ? `<p class="flash ${viewer.flash.kind}" role="${viewer.flash.kind === 'error' ? 'alert' : 'status'}">${h(viewer.flash.text)}</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${h(opts.title)} · Leash console</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head><body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">Leash console</span>${nav}</header>
<main id="main">
<h1>${h(opts.title)}</h1>
${flash}${opts.body}
</main>
</body></html>
`;
}

/** A refusal or failure as a page: the message is Leash's public description, never a backend's text. */
export function errorPage(opts: { status: number; message: string; viewer?: Viewer; back?: string }): string {
  const title = opts.status === 403 ? 'Not allowed' : opts.status === 404 ? 'Not found' : opts.status === 409 ? 'Already changed' : opts.status >= 500 ? 'Unavailable' : 'Not accepted';
  return layout({
    title,
    viewer: opts.viewer,
    body: `<p role="alert">${h(opts.message)}</p>${opts.back ? `<p><a href="${h(opts.back)}">Back</a></p>` : ''}`,
  });
}

/** A state-changing form: POST to `action`, the CSRF field, then the given fields and buttons. */
export function actionForm(viewer: Viewer, action: string, inner: string, cls = 'actions'): string {
  return `<form method="post" action="${h(action)}" class="${cls}">${csrfField(viewer)}${inner}</form>`;
}

/** A required reason field with its label (ids must be unique on the page). */
export function reasonField(id: string, opts: { required: boolean; disabled?: boolean; label?: string }): string {
  return `<div><label for="${h(id)}">${h(opts.label ?? 'Reason')}</label><input type="text" id="${h(id)}" name="reason" maxlength="500"${opts.required ? ' required' : ''}${opts.disabled ? ' disabled' : ''} autocomplete="off"></div>`;
}

/** A button that is disabled with its reason said next to it (and tied to it for screen readers). */
export function button(opts: { label: string; cls?: string; formaction?: string; why?: string | undefined; id: string }): string {
  const disabled = opts.why !== undefined;
  return `<button type="submit"${opts.cls ? ` class="${opts.cls}"` : ''}${opts.formaction ? ` formaction="${h(opts.formaction)}"` : ''}${disabled ? ` disabled aria-describedby="${h(opts.id)}-why"` : ''}>${h(opts.label)}</button>${disabled ? `<p class="why" id="${h(opts.id)}-why">${h(opts.why)}</p>` : ''}`;
}

/** Makes a value safe as part of an element id. */
export const idOf = (value: string) => value.replace(/[^A-Za-z0-9_-]/g, '_');
