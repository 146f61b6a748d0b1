import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { CONSOLE_ROUTES } from '../../src/http/console/routes.js';
import { CONSOLE_SCRIPT } from '../../src/http/console/script.generated.js';
import { consoleBundle, GENERATED } from '../../tools/console-bundle.js';
import { freePort, startTestBroker, type TestBroker } from '../support/broker.js';
import { createTestIdp, type TestIdp } from '../support/oidc-idp.js';

/** The console over plain HTTP: off by default, its surface when on, and the sign-in protocol's refusals. */
describe('security console over HTTP', () => {
  it('the served script is the bundle of src/http/console/browser/ (npm run console:bundle when this fails)', async () => {
    expect(await readFile(GENERATED, 'utf8')).toBe(await consoleBundle());
  });

  describe('off (the default)', () => {
    let tb: TestBroker;
    beforeAll(async () => {
      tb = await startTestBroker();
    });
    afterAll(async () => tb?.close());

    it('every console path answers 404 like any unknown path, with no cookie and no HTML', async () => {
      for (const { path } of CONSOLE_ROUTES) {
        const concrete = path.replace(/:[a-z]+/g, 'x1');
        for (const method of ['GET', 'POST', 'OPTIONS']) {
          const res = await fetch(`${tb.url}${concrete}`, { method, redirect: 'manual' });
          expect({ method, path, status: res.status, cookie: res.headers.get('set-cookie'), type: res.headers.get('content-type') }).toEqual({
            method,
            path,
            status: 404,
            cookie: null,
            type: 'application/json; charset=utf-8',
          });
        }
      }
    });
  });

  describe('on', () => {
    let tb: TestBroker;
    let idp: TestIdp;
    beforeAll(async () => {
      const idpPort = await freePort();
      let made: Promise<TestIdp> | undefined;
      tb = await startTestBroker({
        patch: (cfg) => {
          const issuer = `http://127.0.0.1:${idpPort}`;
          made = createTestIdp({ port: idpPort, redirectUri: `${cfg.settings.issuer}/console/callback`, people: { alice: { roles: ['security'], groups: [] } } });
          cfg.settings.console = { enabled: true, issuer, client_id: 'leash-console', scope: 'openid leash' };
          cfg.admin.issuers = [{ issuer, audience: 'leash-console', jwks: { discovery: true }, algorithms: ['ES256'] }];
        },
      });
      idp = await made!;
      await idp.listen();
    });
    afterAll(async () => {
      await tb?.close();
      await idp?.close();
    });

    const get = (path: string, headers: Record<string, string> = {}) => fetch(`${tb.url}${path}`, { redirect: 'manual', headers });
    const events = async (type: string) => (await tb.broker.testing.store.read(1, 100000)).filter((r) => r.type === type).map((r) => r.event);

    it('the sign-in page carries the strict CSP and anti-framing headers, and no cookie', async () => {
      const res = await get('/console');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-security-policy')).toBe(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      );
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('set-cookie')).toBeNull();
      const html = await res.text();
      expect(html).toContain(`Sign in with ${idp.issuer}`);
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html).not.toMatch(/\sstyle=|<style/);
    });

    it('the one script and stylesheet come from the console itself', async () => {
      const js = await get('/console/assets/console.js');
      expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
      expect(await js.text()).toBe(CONSOLE_SCRIPT);
      const css = await get('/console/assets/console.css');
      expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
      expect(await css.text()).toContain('.sw-exchange{background:#1a7f37}');
    });

    it('the console routes join the surface: OPTIONS names the methods, another method is 405, an unknown console path 404', async () => {
      const options = await fetch(`${tb.url}/console/approvals`, { method: 'OPTIONS' });
      expect({ status: options.status, allow: options.headers.get('allow') }).toEqual({ status: 204, allow: 'GET, HEAD' });
      const wrong = await fetch(`${tb.url}/console/approvals`, { method: 'DELETE' });
      expect({ status: wrong.status, allow: wrong.headers.get('allow') }).toEqual({ status: 405, allow: 'GET, HEAD' });
      expect((await get('/console/nothing')).status).toBe(404);
    });

    it('without a session: a page sends the browser to sign in (and back), an action is 401, the live inbox too', async () => {
      const page = await get('/console/tasks');
      expect({ status: page.status, location: page.headers.get('location') }).toEqual({ status: 303, location: '/console?return=%2Fconsole%2Ftasks' });
      const post = await fetch(`${tb.url}/console/plugins/crm-reader/suspend`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'reason=because&csrf=x' });
      expect(post.status).toBe(401);
      expect(post.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect((await get('/console/approvals/events')).status).toBe(401);
      expect((await events('plugin.suspended')).length).toBe(0);
      expect((await events('admin.denied')).at(-1)).toMatchObject({ route: 'console.approvals.events', reason: 'ERR_ADMIN_UNAUTHENTICATED' });
      const metrics = await (await fetch(`${tb.managementUrl}/metrics`)).text();
      expect(metrics).toMatch(/leash_admin_requests_total\{route="console.plugins.suspend",outcome="unauthenticated"\} 1/);
    });

    it('sign-in starts authorization code + PKCE (S256) with state and nonce, and a Lax sign-in cookie only for the callback', async () => {
      const res = await get('/console/login?return=/console/keys');
      expect(res.status).toBe(303);
      const url = new URL(res.headers.get('location')!);
      expect(`${url.origin}${url.pathname}`).toBe(`${idp.issuer}/auth`);
      const q = Object.fromEntries(url.searchParams);
      expect(q).toMatchObject({ response_type: 'code', client_id: 'leash-console', redirect_uri: `${tb.url}/console/callback`, scope: 'openid leash', code_challenge_method: 'S256' });
      expect(q.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(q.state).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(q.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(q.state).not.toBe(q.nonce);
      expect(res.headers.get('set-cookie')).toMatch(/^leash_console_sign_in=[A-Za-z0-9_-]{43}; Path=\/console\/callback; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/);
    });

    it('no open redirect: a return address outside the console pages is ignored', async () => {
      for (const evil of ['https://evil.example/', '//evil.example/console/tasks', '/console/../admin/keys', '/console/tasks?x=1']) {
        expect((await get(`/console?return=${encodeURIComponent(evil)}`)).status).toBe(200);
        const html = await (await get(`/console?return=${encodeURIComponent(evil)}`)).text();
        expect(html).toContain('href="/console/login"');
      }
    });

    it('a callback this browser did not start, one without its cookie, or the provider saying no: refused, audited, no session', async () => {
      const start = await get('/console/login');
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
      const cookie = /leash_console_sign_in=([^;]+)/.exec(start.headers.get('set-cookie')!)![1]!;

      const unknown = await get(`/console/callback?code=abc&state=${'A'.repeat(43)}`, { cookie: `leash_console_sign_in=${cookie}` });
      expect(unknown.status).toBe(400);
      // Without the browser's cookie the state is spent and refused.
      const stolen = await get(`/console/callback?code=abc&state=${state}`);
      expect(stolen.status).toBe(400);
      expect(stolen.headers.get('set-cookie')).toContain('leash_console_sign_in=; Path=/console/callback; Max-Age=0');
      // ...and spent: the right cookie afterwards does not revive it.
      expect((await get(`/console/callback?code=abc&state=${state}`, { cookie: `leash_console_sign_in=${cookie}` })).status).toBe(400);
      const said = await get(`/console/callback?error=access_denied&state=${state}`);
      expect(said.status).toBe(401);
      for (const r of [unknown, stolen, said]) expect(r.headers.get('set-cookie') ?? '').not.toContain('leash_console=');
      const failed = await events('console.sign_in_failed');
      expect(failed.map((e) => e.reason)).toEqual(['state_mismatch', 'state_mismatch', 'state_mismatch', 'idp_error']);
      expect((await events('console.signed_in')).length).toBe(0);
    });

    it('a code the provider does not know is refused without showing its error text', async () => {
      const start = await get('/console/login');
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
      const cookie = /leash_console_sign_in=([^;]+)/.exec(start.headers.get('set-cookie')!)![1]!;
      const res = await get(`/console/callback?code=not-a-real-code&state=${state}`, { cookie: `leash_console_sign_in=${cookie}` });
      expect(res.status).toBe(503);
      const html = await res.text();
      expect(html).toContain('did not accept the sign-in');
      expect(html).not.toMatch(/invalid_grant|grant request is invalid/);
      expect((await events('console.sign_in_failed')).at(-1)).toMatchObject({ reason: 'token_endpoint' });
    });
  });
});
