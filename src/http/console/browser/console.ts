/**
 * The console's only script (bundled by tools/console-bundle.ts into ../script.generated.ts
 * and served as /console/assets/console.js; the CSP allows no other). The pages work
 * without it: every action is a plain form. It adds the approvals inbox's live update
 * (server-sent events) and keeps a form from being sent twice.
 */

interface InboxUpdate {
  readonly html: string;
  readonly pending: number;
}

function liveInbox(): void {
  const inbox = document.getElementById('inbox');
  const status = document.getElementById('live-status');
  const url = inbox?.dataset.live;
  if (!inbox || !url) return;
  const say = (text: string) => {
    if (status) status.textContent = text;
  };
  const source = new EventSource(url);
  source.addEventListener('open', () => say('Live: new requests and decisions appear here as they happen.'));
  source.addEventListener('error', () => say('Live updates interrupted; reconnecting…'));
  source.addEventListener('inbox', (event: MessageEvent<string>) => {
    const update = JSON.parse(event.data) as InboxUpdate;
    // Keep what the approver is typing: a reason field that has focus survives the refresh.
    const active = document.activeElement instanceof HTMLInputElement && inbox.contains(document.activeElement) ? document.activeElement : undefined;
    const kept = active ? { id: active.id, value: active.value } : undefined;
    // Server-rendered, every value escaped there: the same markup the page was served with.
    inbox.innerHTML = update.html;
    if (kept) {
      const again = document.getElementById(kept.id);
      if (again instanceof HTMLInputElement) {
        again.value = kept.value;
        again.focus();
      }
    }
    document.title = `${update.pending > 0 ? `(${update.pending}) ` : ''}Approvals · Leash console`;
    say(`Live: ${update.pending} pending ${update.pending === 1 ? 'request' : 'requests'}.`);
  });
  window.addEventListener('pagehide', () => source.close());
}

function sendOnce(): void {
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.dataset.sent === 'true') {
      event.preventDefault();
      return;
    }
    form.dataset.sent = 'true';
  });
}

sendOnce();
liveInbox();
