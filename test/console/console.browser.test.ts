import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { mkdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, freePort, startTestBroker, type TestBroker } from '../support/broker.js';
import { axeViolations, launchChromium } from '../support/browser.js';
import { createTestIdp, type TestIdp } from '../support/oidc-idp.js';

const AUDIT_API = 'https://audit.example.com';
/** `CONSOLE_SCREENSHOTS=1` writes the pictures docs/console.md shows; otherwise they go to a temp folder. */
// A browser on a busy two-core machine: each step has its own 8 s limit (setDefaultTimeout below).
jest.setTimeout(90000);

const SHOTS = process.env.CONSOLE_SCREENSHOTS === '1' ? join(process.cwd(), 'docs/console') : undefined;

const PEOPLE = {
  // An approver who is also on call for keys.
  alice: { roles: ['security', 'ops'], groups: ['approvers'] },
  // A security admin on the team that owns prod-only: may not approve its requests.
  owen: { roles: ['security'], groups: ['team-ops@example.com'] },
  // Signed in, but no admin role at all.
  nora: { roles: [], groups: [] },
};

/**
 * The security console in a real browser (Debian's chromium through playwright-core)
 * against a real broker (SQLite, the real token endpoint) and a real OpenID Connect
 * provider in-process: sign-in with code + PKCE, the live approvals inbox, approve and
 * deny with the plugin's exchange as the proof, separation of duties, the kill switch,
 * tasks, review, keys; CSRF, CSP and an axe-core accessibility check on every page.
 */
describe('security console in a browser', () => {
  let tb: TestBroker;
  let idp: TestIdp;
  let browser: Browser;
  let clock: ManualClock;
  let task: string;
  let shots: string;
  const contexts: BrowserContext[] = [];
  const nowS = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    shots = SHOTS ?? (await mkdtemp(join(tmpdir(), 'leash-console-shots-')));
    mkdirSync(shots, { recursive: true });
    const idpPort = await freePort();
    clock = new ManualClock(Date.now());
    let made: Promise<TestIdp> | undefined;
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        const issuer = `http://127.0.0.1:${idpPort}`;
        made = createTestIdp({ port: idpPort, redirectUri: `${cfg.settings.issuer}/console/callback`, people: PEOPLE });
        // A next key may sign at once, so the console's rotate has something to promote.
        cfg.settings.keys.prepublish = 0;
        cfg.settings.approvals = { poll_interval: 5, pending_ttl: 600, redeem_ttl: 120, approver_groups: ['approvers'] };
        cfg.settings.console = { enabled: true, issuer, client_id: 'leash-console', scope: 'openid leash', live_interval_ms: 300 };
        // The JWKS is filled in below, once the provider has made its key.
        cfg.admin.issuers = [{ issuer, audience: 'leash-console', jwks: { discovery: true }, algorithms: ['ES256'] }];
      },
    });
    idp = await made!;
    await idp.listen();
    task = await tb.openTask({ plugins: ['prod-only', 'crm-reader'] });
    browser = await launchChromium();
  }, 60000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await tb?.close();
    await idp?.close();
  });

  async function signIn(person: keyof typeof PEOPLE, path = '/console'): Promise<Page> {
    const context = await browser.newContext();
    // A step that cannot happen fails with what it waited for, well before jest's timeout.
    context.setDefaultTimeout(8000);
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${tb.url}${path}`);
    await page.getByRole('link', { name: /Sign in with/ }).click();
    await page.waitForURL(`${idp.issuer}/**`);
    await page.fill('input[name=login]', person);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    await page.waitForURL(`${tb.url}/console/**`);
    await page.waitForLoadState('load');
    // The callback page moves on by itself (meta refresh).
    await page.waitForURL((url) => !url.pathname.endsWith('/callback'));
    return page;
  }

  const auditRequest = async (justification: string, extra: Record<string, string> = {}) => ({
    grant_type: EXCHANGE,
    client_id: 'prod-only',
    subject_token: await tb.cluster.saToken({ sa: 'prod-only', nowSeconds: nowS() }),
    subject_token_type: JWT_TYPE,
    resource: AUDIT_API,
    task,
    justification,
    ...extra,
  });

  async function pending(justification: string): Promise<string> {
    const res = await tb.exchange(await auditRequest(justification));
    expect(res.body).toMatchObject({ error: 'authorization_pending' });
    return String(res.body.approval_id);
  }

  const crmExchange = async () =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });

  const auditOf = async (type: string) => (await tb.broker.testing.store.read(1, 100000)).filter((r) => r.type === type).map((r) => r.event);

  async function expectAccessible(page: Page, name: string): Promise<void> {
    expect({ page: name, violations: await axeViolations(page) }).toEqual({ page: name, violations: [] });
  }

  it('signs in with the OIDC provider (code + PKCE): the session cookie is HttpOnly, Secure, SameSite=Strict, and the sign-in is audited', async () => {
    const page = await signIn('alice');
    expect(new URL(page.url()).pathname).toBe('/console/approvals');
    expect(await page.locator('.who').textContent()).toContain(`Signed in as jwt:${idp.issuer}#alice`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'leash_console');
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/console' });
    expect(cookies.find((c) => c.name === 'leash_console_sign_in')).toBeUndefined();
    const signedIn = await auditOf('console.signed_in');
    expect(signedIn.at(-1)).toMatchObject({ actor: `jwt:${idp.issuer}#alice`, roles: expect.arrayContaining(['security', 'ops']), groups: ['approvers'] });
    expect(JSON.stringify(signedIn)).not.toContain(session!.value);
    await page.close();
  });

  it('every page: strict CSP header, no inline script or style, no CSP violation, no third-party request, and axe finds no WCAG A/AA violation', async () => {
    const page = await signIn('alice');
    const violations: string[] = [];
    const foreign: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(tb.url)) foreign.push(r.url());
    });
    const paths = ['/console/approvals', '/console/tasks', `/console/tasks/${task}`, '/console/plugins', '/console/review', '/console/keys'];
    for (const path of paths) {
      const res = (await page.goto(`${tb.url}${path}`)) as Response;
      expect({ path, status: res.status() }).toEqual({ path, status: 200 });
      const csp = (await res.allHeaders())['content-security-policy'] ?? '';
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).toContain("frame-ancestors 'none'");
      const inline = await page.evaluate(() => {
        const doc = (globalThis as any).document;
        return {
          scripts: [...doc.querySelectorAll('script')].filter((s: any) => !s.src || (s.textContent ?? '').trim() !== '').length,
          styled: doc.querySelectorAll('[style], style').length,
          handlers: [...doc.querySelectorAll('*')].filter((e: any) => [...e.attributes].some((a: any) => a.name.startsWith('on'))).length,
        };
      });
      expect({ path, ...inline }).toEqual({ path, scripts: 0, styled: 0, handlers: 0 });
      await expectAccessible(page, path);
    }
    expect(violations).toEqual([]);
    expect(foreign).toEqual([]);
    // The sign-in page too, signed out.
    const anon = await (await browser.newContext()).newPage();
    await anon.goto(`${tb.url}/console`);
    await expectAccessible(anon, '/console (sign in)');
    await anon.screenshot({ path: join(shots, 'sign-in.png') });
    await anon.context().close();
    await page.close();
  });

  it('a pending request appears live; approving it lets the plugin redeem its credential', async () => {
    const page = await signIn('alice');
    await page.waitForFunction(() => ((globalThis as any).document.getElementById('live-status')?.textContent ?? '').startsWith('Live'), undefined, { timeout: 5000 });
    const id = await pending('quarterly audit export, ticket SEC-42');
    // No reload: the server-sent event brings it.
    const card = page.locator(`#approval-${id}`);
    await card.waitFor({ timeout: 10000 });
    await expect(card.textContent()).resolves.toContain('quarterly audit export, ticket SEC-42');
    await expect(card.textContent()).resolves.toContain('team-ops@example.com');
    await page.screenshot({ path: join(shots, 'approvals.png'), fullPage: true });
    await card.getByLabel('Reason').fill('matches SEC-42');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.waitForURL(`${tb.url}/console/approvals`);
    await expect(page.locator('.flash.ok').textContent()).resolves.toContain(`Approved prod-only's request ${id}`);
    clock.advance(6);
    const res = await tb.exchange(await auditRequest('quarterly audit export, ticket SEC-42', { approval_id: id }));
    expect(res.status).toBe(200);
    expect(typeof res.body.access_token).toBe('string');
    expect((await auditOf('approval.approved')).at(-1)).toMatchObject({ approval: id, approver: `jwt:${idp.issuer}#alice`, reason: 'matches SEC-42' });
    await page.close();
  });

  it('deny: the plugin gets access_denied', async () => {
    const page = await signIn('alice');
    const id = await pending('export everything, no ticket');
    const card = page.locator(`#approval-${id}`);
    await card.waitFor({ timeout: 10000 });
    await card.getByLabel('Reason').fill('no ticket');
    await card.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL(`${tb.url}/console/approvals`);
    await expect(page.locator('.flash.ok').textContent()).resolves.toContain(`Denied prod-only's request ${id}`);
    clock.advance(6);
    const res = await tb.exchange(await auditRequest('export everything, no ticket', { approval_id: id }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'access_denied' });
    expect((await auditOf('approval.denied')).at(-1)).toMatchObject({ approval: id, approver: `jwt:${idp.issuer}#alice`, reason: 'no ticket' });
    await page.close();
  });

  it("separation of duties: the plugin's owner sees Approve disabled with the reason, and the server refuses it too", async () => {
    const id = await pending('owner must not approve this');
    const page = await signIn('owen');
    const card = page.locator(`#approval-${id}`);
    await card.waitFor({ timeout: 10000 });
    const approve = card.getByRole('button', { name: 'Approve' });
    expect(await approve.isDisabled()).toBe(true);
    await expect(card.locator(`#approve-${id}-why`).textContent()).resolves.toContain("Separation of duties: you own plugin 'prod-only'");
    // The button is tied to its reason for assistive technology.
    expect(await approve.getAttribute('aria-describedby')).toBe(`approve-${id}-why`);
    expect(await card.getByRole('button', { name: 'Deny' }).isDisabled()).toBe(false);
    await page.screenshot({ path: join(shots, 'separation-of-duties.png'), fullPage: true });
    // Sent anyway, with a valid CSRF token: the domain refuses (403) and the refusal is audited.
    const csrf = await card.locator('input[name=csrf]').inputValue();
    const status = await page.evaluate(
      async ([url, token]) => (await fetch(url!, { method: 'POST', body: new URLSearchParams({ csrf: token!, reason: 'let me' }), redirect: 'manual' })).status,
      [`/console/approvals/${id}/approve`, csrf],
    );
    expect(status).toBe(403);
    expect((await auditOf('admin.denied')).at(-1)).toMatchObject({ route: 'console.approvals.approve', reason: 'ERR_ADMIN_FORBIDDEN', actor: `jwt:${idp.issuer}#owen` });
    const still = await fetch(`${tb.url}/admin/approvals/${id}`, { headers: { authorization: 'Bearer test-ops-key-0123456789' } });
    expect(((await still.json()) as { state: string }).state).toBe('pending');
    await page.close();
  });

  it('CSRF: a state change without the session token, or with another token, is refused (403) and changes nothing', async () => {
    const id = await pending('csrf probe');
    const page = await signIn('alice');
    await page.locator(`#approval-${id}`).waitFor({ timeout: 10000 });
    const post = (body: Record<string, string>) =>
      page.evaluate(async ([url, b]) => (await fetch(url as string, { method: 'POST', body: new URLSearchParams(b as Record<string, string>), redirect: 'manual' })).status, [
        `/console/approvals/${id}/approve`,
        body,
      ] as const);
    expect(await post({ reason: 'no token' })).toBe(403);
    expect(await post({ reason: 'wrong token', csrf: 'A'.repeat(43) })).toBe(403);
    // Another origin posting to the console (the provider's pages stand in for an attacker's:
    // another port of 127.0.0.1 is the same site, so the cookie goes along and the CSRF token
    // and Origin checks are what refuse it; the browser does not even hand back the answer).
    const evil = await page.context().newPage();
    await evil.goto(`${idp.issuer}/.well-known/openid-configuration`);
    const crossSite = await evil.evaluate(async (url) => {
      try {
        return (await fetch(url, { method: 'POST', body: new URLSearchParams({ reason: 'cross site' }), mode: 'no-cors', credentials: 'include' })).type;
      } catch (e) {
        return String(e);
      }
    }, `${tb.url}/console/approvals/${id}/approve`);
    expect(['opaque', 'TypeError: Failed to fetch']).toContain(crossSite);
    const state = await fetch(`${tb.url}/admin/approvals/${id}`, { headers: { authorization: 'Bearer test-ops-key-0123456789' } });
    expect(((await state.json()) as { state: string }).state).toBe('pending');
    const csrfDenials = (await auditOf('admin.denied')).filter((e) => e.route === 'console.approvals.approve' && (e.detail as { check?: string } | undefined)?.check === 'csrf');
    expect(csrfDenials.length).toBeGreaterThanOrEqual(3);
    // Clean up: deny it properly.
    const card = page.locator(`#approval-${id}`);
    await card.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL(`${tb.url}/console/approvals`);
    await evil.close();
    await page.close();
  });

  it('the kill switch: suspending a plugin refuses its exchange; resuming lets it through again', async () => {
    expect((await crmExchange()).status).toBe(200);
    const page = await signIn('alice', '/console/plugins');
    expect(new URL(page.url()).pathname).toBe('/console/plugins');
    const card = page.locator('#plugin-crm-reader');
    await card.getByLabel('Reason to suspend crm-reader').fill('incident INC-7: leaked token');
    await card.getByRole('button', { name: 'Suspend (kill switch)' }).click();
    await page.waitForURL(/\/console\/plugins/);
    await expect(page.locator('.flash.ok').textContent()).resolves.toContain('Suspended crm-reader');
    await expect(page.locator('#plugin-crm-reader').textContent()).resolves.toContain('incident INC-7: leaked token');
    await page.screenshot({ path: join(shots, 'plugins.png'), fullPage: true });
    const refused = await crmExchange();
    expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 400, error: 'unauthorized_client' });
    expect(refused.body.access_token).toBeUndefined();
    expect((await auditOf('plugin.suspended')).at(-1)).toMatchObject({ plugin: 'crm-reader', actor: `jwt:${idp.issuer}#alice`, reason: 'incident INC-7: leaked token' });
    // A reason is required (the browser says so before sending; the server too).
    await page.locator('#plugin-crm-reader').getByLabel('Reason to resume crm-reader').fill('contained, token rotated');
    await page.locator('#plugin-crm-reader').getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL(/\/console\/plugins/);
    expect((await crmExchange()).status).toBe(200);
    await page.close();
  });

  it("tasks: the list, a task's timeline as a swim-lane picture, and ending the task revokes it", async () => {
    const page = await signIn('alice', '/console/tasks');
    await page.getByLabel('Task id, plugin or opener').fill(task.slice(0, 12));
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: task }).click();
    await page.waitForURL(`${tb.url}/console/tasks/${task}`);
    expect(await page.locator('.timeline svg[role=img]').count()).toBe(1);
    await expect(page.locator('table').last().textContent()).resolves.toContain('prod-only');
    await page.screenshot({ path: join(shots, 'task-timeline.png'), fullPage: true });
    await page.getByRole('button', { name: /End task/ }).click();
    await page.waitForURL(`${tb.url}/console/tasks/${task}`);
    await expect(page.locator('.flash.ok').textContent()).resolves.toContain(`Ended task ${task}`);
    const view = await fetch(`${tb.url}/tasks/${task}`, { headers: { authorization: 'Bearer test-ops-key-0123456789' } });
    expect((await view.json()) as { state: string; ended_by: string }).toMatchObject({ state: 'ended', ended_by: `jwt:${idp.issuer}#alice` });
    expect((await crmExchange()).status).toBe(400);
    await page.goto(`${tb.url}/console/tasks`);
    await page.screenshot({ path: join(shots, 'tasks.png'), fullPage: true });
    await page.close();
  });

  it('review: findings filter by severity and framework mapping, each linked to its plugin and policy line', async () => {
    const page = await signIn('alice', '/console/review');
    const all = await page.locator('tbody tr').count();
    expect(all).toBeGreaterThan(0);
    await page.screenshot({ path: join(shots, 'review.png'), fullPage: true });
    await page.getByLabel('Severity at least').selectOption('high');
    await page.getByRole('button', { name: 'Filter' }).click();
    const high = await page.locator('tbody tr').count();
    expect(high).toBeLessThanOrEqual(all);
    for (const sev of await page.locator('tbody tr td:first-child').allTextContents()) expect(['critical', 'high']).toContain(sev.trim());
    await page.goto(`${tb.url}/console/review`);
    const options = (await page.locator('#framework option').evaluateAll((os) => os.map((o) => (o as any).value as string))).filter(Boolean);
    expect(options.length).toBeGreaterThan(0);
    await page.getByLabel('Framework mapping').selectOption(options[0]!);
    await page.getByRole('button', { name: 'Filter' }).click();
    const mapped = await page.locator('tbody tr td:last-child').allTextContents();
    expect(mapped.length).toBeGreaterThan(0);
    expect(await page.locator('tbody tr td:nth-child(3) a').count()).toBeGreaterThan(0);
    await page.close();
  });

  it('keys: the ring, and rotate for the ops role (audited with the person)', async () => {
    const page = await signIn('alice', '/console/keys');
    await page.screenshot({ path: join(shots, 'keys.png'), fullPage: true });
    const before = await page.locator('tbody tr').count();
    expect(before).toBeGreaterThan(0);
    await page.getByLabel('Reason').fill('quarterly rotation');
    await page.getByRole('button', { name: /Rotate now/ }).click();
    await page.waitForURL(`${tb.url}/console/keys`);
    await expect(page.locator('.flash.ok').textContent()).resolves.toContain('Rotated');
    expect((await auditOf('key.promoted')).at(-1)).toMatchObject({ actor: `jwt:${idp.issuer}#alice`, reason: 'quarterly rotation' });
    await page.close();
  });

  it('a person without a role sees what they may not do, and the refusal is audited', async () => {
    const page = await signIn('nora');
    expect(new URL(page.url()).pathname).toBe('/console/approvals');
    await expect(page.getByRole('alert').textContent()).resolves.toContain("'security' role");
    for (const path of ['/console/plugins', '/console/keys', '/console/review']) {
      const res = (await page.goto(`${tb.url}${path}`)) as Response;
      expect({ path, status: res.status() }).toEqual({ path, status: 403 });
    }
    expect((await auditOf('admin.denied')).filter((e) => e.actor === `jwt:${idp.issuer}#nora`).length).toBeGreaterThanOrEqual(4);
    await page.close();
  });

  it('sign out ends the session: the cookie is cleared and the pages ask to sign in again', async () => {
    const page = await signIn('alice');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${tb.url}/console`);
    expect((await page.context().cookies()).find((c) => c.name === 'leash_console')).toBeUndefined();
    await page.goto(`${tb.url}/console/approvals`);
    expect(new URL(page.url()).pathname).toBe('/console');
    expect((await auditOf('console.signed_out')).at(-1)).toMatchObject({ actor: `jwt:${idp.issuer}#alice` });
    await page.close();
  });
});
