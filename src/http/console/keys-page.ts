import type { KeyInfo } from '../../keys/key-manager.js';
import { actionForm, button, h, idOf, iso, reasonField, type Viewer } from './html.js';

export function keysPage(viewer: Viewer, input: { backend: string; keys: readonly KeyInfo[]; opsBlocked: string | undefined }): string {
  const order = { next: 0, current: 1, retired: 2 } as const;
  const rows = [...input.keys]
    .sort((a, b) => order[a.state] - order[b.state] || b.createdAt - a.createdAt)
    .map((k) => {
      const retire =
        k.state === 'retired'
          ? '<span class="muted">retired</span>'
          : actionForm(viewer, `/console/keys/${encodeURIComponent(k.kid)}/retire`, button({ label: 'Retire', why: input.opsBlocked, id: `retire-${idOf(k.kid)}` }), 'inline');
      return `<tr><td class="mono">${h(k.kid)}</td><td>${h(k.state)}</td><td>${h(k.alg)}</td><td class="mono">${h(iso(k.createdAt))}</td><td class="mono">${h(iso(k.activatedAt))}</td><td class="mono">${h(iso(k.retiredAt))}</td><td class="mono">${h(iso(k.removeAt))}</td><td>${retire}</td></tr>`;
    })
    .join('');
  return `<p class="muted">The signing key ring (backend <code>${h(input.backend)}</code>): the next key is published before it signs; a retired key stays published until the tokens it signed have expired.</p>
<table><thead><tr><th scope="col">Key id</th><th scope="col">State</th><th scope="col">Algorithm</th><th scope="col">Created</th><th scope="col">Signing since</th><th scope="col">Retired</th><th scope="col">Removed at</th><th scope="col">Action</th></tr></thead><tbody>${rows}</tbody></table>
<h2>Rotate</h2>
${actionForm(viewer, '/console/keys/rotate', `${reasonField('rotate-reason', { required: false, disabled: input.opsBlocked !== undefined })}${button({ label: 'Rotate now (the next key becomes current)', why: input.opsBlocked, id: 'rotate' })}`)}`;
}
