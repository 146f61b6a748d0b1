import { createHash } from 'node:crypto';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import { decodeJwt } from 'jose';
import { mayDecide, type ApprovalDecisions, type ApprovalView } from '../../approvals/decisions.js';
import type { AuditSink } from '../../audit/recorder.js';
import type { ExceptionConfig, Settings } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { toOAuthError } from '../../errors/oauth-error.js';
import { retireKey, rotateKey } from '../../key-lifecycle/key-operations.js';
import type { KeyManager } from '../../keys/key-manager.js';
import type { Metrics } from '../../metrics/metrics.js';
import type { CompiledPolicy } from '../../policy/types.js';
import type { ReviewReport } from '../../review/review.js';
import { resumePlugin, suspendPlugin } from '../../revocation/kill-switch.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { SuspensionStore } from '../../store/store.js';
import type { Task } from '../../store/records.js';
import type { TaskService } from '../../tasks/task-service.js';
import type { Clock } from '../../time/clock.js';
import type { Timeline } from '../../usage/timeline.js';
import { requireRole, type AdminAuthenticator, type AdminPrincipal } from '../admin/authenticate.js';
import { KEY_ROUTES, translated } from '../admin/keys-routes.js';
import { PLUGIN_ROUTES } from '../admin/plugins-routes.js';
import { REVIEW_ROUTES } from '../admin/review-routes.js';
import { TASK_ROUTES } from '../admin/tasks-routes.js';
import { adminOutcome } from '../admin/route.js';
import { TIMELINE_ROUTES } from '../admin/timeline-routes.js';
import { approvalsPage, inboxFragment, type InboxInput } from './approvals-page.js';
import { errorPage, h, layout, type Viewer } from './html.js';
import { keysPage } from './keys-page.js';
import { OidcSignIn, SignInError } from './oidc-sign-in.js';
import { pluginsPage } from './plugins-page.js';
import { reviewFilter, reviewPage } from './review-page.js';
import { CONSOLE_CSP } from './routes.js';
import { CONSOLE_SCRIPT } from './script.generated.js';
import { ConsoleSessions, sameSecret, sessionLabel, type ConsoleSession } from './sessions.js';
import { CONSOLE_CSS } from './styles.js';
import { taskPage, tasksPage } from './tasks-page.js';

export interface ConsoleDeps {
  readonly settings: () => Settings;
  readonly authenticator: () => AdminAuthenticator;
  readonly clock: Clock;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly approvals: ApprovalDecisions;
  readonly policy: () => CompiledPolicy;
  /** The exceptions of the policy in force. */
  readonly exceptions: () => readonly ExceptionConfig[];
  readonly suspensions: SuspensionStore;
  readonly revocation: RevocationService;
  readonly tasks: TaskService;
  readonly timeline: (task: Task) => Promise<Timeline>;
  readonly review: (opts: { windowDays?: number }) => Promise<ReviewReport>;
  readonly keys: KeyManager;
  readonly maxBodyBytes: () => number;
}

const SESSION_COOKIE = 'leash_console';
const SIGN_IN_COOKIE = 'leash_console_sign_in';
const PLUGIN_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TASK_ID = /^tsk_[A-Za-z0-9_-]{10,64}$/;
const KID = /^[A-Za-z0-9_-]{1,128}$/;
const APPROVAL_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Where a sign-in may send the browser back to: a console page, nothing else (no open redirect). */
const RETURN_TO = /^\/console\/(approvals|tasks|plugins|review|keys)(\/[A-Za-z0-9_-]{1,80})?$/;
/** 3 to 500 characters, not blank, no control characters (the admin API's RequiredReason, plus no control characters). */
const REASON = /^\s*[^\p{Cc}\s][^\p{Cc}]+[^\p{Cc}\s]\s*$/u;
const MAX_LIVE = 100;
/** Codes that are an admin refusal: audited as `admin.denied`, as the admin API does. */
const DENIALS: ReadonlySet<string> = new Set(['ERR_ADMIN_UNAUTHENTICATED', 'ERR_ADMIN_FORBIDDEN', 'ERR_TASK_NOT_OWNER']);

function cookies(req: Request): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

const setCookie = (name: string, value: string, opts: { path: string; maxAge: number; sameSite: 'Strict' | 'Lax' }) =>
  `${name}=${value}; Path=${opts.path}; Max-Age=${Math.max(0, Math.floor(opts.maxAge))}; HttpOnly; Secure; SameSite=${opts.sameSite}`;

/** The headers every console answer carries. */
function secure(res: Response): void {
  res.set({
    'Content-Security-Policy': CONSOLE_CSP,
    'X-Frame-Options': 'DENY',
    // The callback URL carries the authorization code: no page hands it to another origin.
    // (`no-referrer` would also make the browser send `Origin: null` on the console's own forms.)
    'Referrer-Policy': 'same-origin',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
}

interface Signed {
  readonly session: ConsoleSession;
  readonly principal: AdminPrincipal;
  readonly viewer: Viewer;
}

/**
 * The security console (docs/console.md): server-rendered pages over the same domain
 * services the admin API calls (ApprovalDecisions, the kill switch, TaskService, the key
 * operations, the review), so separation of duties, validation and audit are theirs. A
 * person signs in with the admin OIDC issuer (authorization code + PKCE); the ID token is
 * an admin token, its roles and groups mapped as for any admin JWT.
 */
export function consoleRouter(deps: ConsoleDeps): Router {
  const sessions = new ConsoleSessions(() => deps.clock.now());
  let signIn: { key: string; client: OidcSignIn } | undefined;
  let live = 0;

  const settings = () => deps.settings().console;
  const client = (): OidcSignIn => {
    const s = deps.settings();
    const key = `${s.console.issuer}\u0000${s.console.client_id}\u0000${s.console.scope}\u0000${s.issuer}`;
    if (signIn?.key !== key) {
      signIn = {
        key,
        client: new OidcSignIn({
          issuer: s.console.issuer ?? '',
          clientId: s.console.client_id ?? '',
          scope: s.console.scope,
          redirectUri: `${s.issuer}/console/callback`,
          now: () => deps.clock.now(),
        }),
      };
    }
    return signIn.client;
  };

  const denied = async (route: string, method: string, err: LeashError, actor: string | undefined, extra: Record<string, unknown> = {}) => {
    await deps.audit.record('admin.denied', { route, method, reason: err.code, ...(actor ? { actor } : {}), ...(err.detail ? { detail: err.detail } : {}), ...extra });
  };

  /** The signed-in person, verified again now; undefined (and the session closed) when the token no longer is valid. */
  async function whoIs(req: Request): Promise<Signed | undefined> {
    const session = sessions.find(cookies(req).get(SESSION_COOKIE));
    if (!session) return undefined;
    let principal: AdminPrincipal;
    try {
      principal = await deps.authenticator().authenticate(`Bearer ${session.idToken}`);
    } catch (err) {
      if (err instanceof LeashError && err.code === 'ERR_ADMIN_UNAUTHENTICATED') {
        sessions.close(session);
        return undefined;
      }
      throw err;
    }
    if (principal.id !== session.actor) {
      sessions.close(session);
      return undefined;
    }
    return { session, principal, viewer: { principal, csrf: session.csrf } };
  }

  /** The message the last action left for the next page, once (only pages take it: a live inbox's pass must not). */
  const withFlash = (signed: Signed): Signed => {
    const flash = signed.session.flash;
    signed.session.flash = undefined;
    return flash ? { ...signed, viewer: { ...signed.viewer, flash } } : signed;
  };

  const send = (res: Response, status: number, html: string) => {
    secure(res);
    res.status(status).type('text/html; charset=utf-8').send(html);
  };

  /** A failure as a page: a refusal is audited as the admin API audits it; a fault never shows its text. */
  async function fail(res: Response, err: unknown, route: string, method: string, signed: Signed | undefined, back?: string): Promise<void> {
    let answer = err;
    if (err instanceof LeashError && DENIALS.has(err.code)) {
      try {
        await denied(route, method, err, signed?.principal.id);
      } catch (auditErr) {
        answer = auditErr;
      }
    }
    deps.metrics.adminRequests.inc({ route, outcome: adminOutcome(answer) });
    const { status, body } = toOAuthError(answer);
    if (status === 503) res.set('Retry-After', '5');
    send(res, status, errorPage({ status, message: status >= 500 ? 'The broker could not complete the request; retry later.' : body.error_description, viewer: signed?.viewer, back }));
  }

  type Page = (req: Request, res: Response, signed: Signed) => Promise<string>;

  /** A GET page: a visitor who is not signed in is sent to the sign-in page (and back here after). */
  const page = (route: string, title: string, current: string, render: Page) => async (req: Request, res: Response) => {
    let signed: Signed | undefined;
    try {
      const found = await whoIs(req);
      if (!found) {
        const back = RETURN_TO.test(req.path) ? `?return=${encodeURIComponent(req.path)}` : '';
        res.set('Cache-Control', 'no-store').redirect(303, `/console${back}`);
        return;
      }
      signed = withFlash(found);
      const body = await render(req, res, signed);
      deps.metrics.adminRequests.inc({ route, outcome: 'ok' });
      if (res.headersSent) return;
      send(res, 200, layout({ title, current, viewer: signed.viewer, body }));
    } catch (err) {
      await fail(res, err, route, 'GET', signed, current);
    }
  };

  const form = express.urlencoded({ extended: false, limit: 8192, parameterLimit: 10 });

  /** A POST action: signed in, the CSRF token and the request's origin checked, then the domain call; back to `back` with a message. */
  const action =
    (route: string, back: (req: Request) => string, run: (req: Request, signed: Signed, body: Record<string, unknown>, res: Response) => Promise<string>) => async (req: Request, res: Response) => {
      let signed: Signed | undefined;
      try {
        signed = await whoIs(req);
        if (!signed) throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'sign in to the console first');
        await new Promise<void>((resolve, reject) => form(req, res, (err?: unknown) => (err === undefined ? resolve() : reject(new LeashError('ERR_ADMIN_INVALID', 'the form could not be read')))));
        const body = (req.body ?? {}) as Record<string, unknown>;
        const origin = req.header('origin');
        const expected = new URL(deps.settings().issuer).origin;
        const fetchSite = req.header('sec-fetch-site');
        const token = typeof body.csrf === 'string' ? body.csrf : '';
        if (!sameSecret(token, signed.session.csrf) || (origin !== undefined && origin !== expected) || (fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none')) {
          throw new LeashError('ERR_ADMIN_FORBIDDEN', 'this form is not from your console session (CSRF check failed); reload the page and try again', { check: 'csrf' });
        }
        const done = await run(req, signed, body, res);
        deps.metrics.adminRequests.inc({ route, outcome: 'ok' });
        signed.session.flash = { kind: 'ok', text: done };
        res.set('Cache-Control', 'no-store').redirect(303, back(req));
      } catch (err) {
        await fail(res, err, route, 'POST', signed, back(req));
      }
    };

  const reasonOf = (body: Record<string, unknown>, required: boolean): string | undefined => {
    const raw = typeof body.reason === 'string' ? body.reason : '';
    if (raw.trim() === '' && !required) return undefined;
    if (raw.length > 500 || !REASON.test(raw)) throw new LeashError('ERR_ADMIN_INVALID', 'the reason must be 3 to 500 printable characters');
    return raw.trim();
  };
  const param = (req: Request, name: string, re: RegExp, what: string): string => {
    const v = req.params[name];
    if (typeof v !== 'string' || !re.test(v)) throw new LeashError('ERR_ADMIN_NOT_FOUND', `no such ${what}`);
    return v;
  };

  async function inbox(principal: AdminPrincipal): Promise<InboxInput> {
    return { approvals: await deps.approvals.list(principal, undefined, 200), settings: deps.settings().approvals, policy: deps.policy() };
  }

  const router = Router();
  // Off: every /console path falls through to the surface's 404.
  router.use('/console', (_req: Request, _res: Response, next: NextFunction) => (settings().enabled ? next() : next('router')));

  // ---- assets: the one script and the one stylesheet
  router.get('/console/assets/console.js', (_req, res) => {
    secure(res);
    res.type('text/javascript; charset=utf-8').send(CONSOLE_SCRIPT);
  });
  router.get('/console/assets/console.css', (_req, res) => {
    secure(res);
    res.type('text/css; charset=utf-8').send(CONSOLE_CSS);
  });

  // ---- sign-in and sign-out
  router.get('/console', async (req, res) => {
    try {
      if (await whoIs(req)) return void res.set('Cache-Control', 'no-store').redirect(303, '/console/approvals');
    } catch (err) {
      return fail(res, err, 'console.home', 'GET', undefined);
    }
    const back = typeof req.query.return === 'string' && RETURN_TO.test(req.query.return) ? `?return=${encodeURIComponent(req.query.return)}` : '';
    send(
      res,
      200,
      layout({
        title: 'Sign in',
        body: `<p>The Leash security console: approvals, tasks, plugins, review findings and signing keys.</p>
<p><a href="/console/login${h(back)}">Sign in with ${h(settings().issuer)}</a></p>
<p class="muted">You sign in with your organisation's identity provider; your roles and groups come from it, as for admin tokens. API keys do not sign in here.</p>`,
      }),
    );
  });

  router.get('/console/login', async (req, res) => {
    try {
      const returnTo = typeof req.query.return === 'string' && RETURN_TO.test(req.query.return) ? req.query.return : '/console/approvals';
      const start = await client().start();
      const browser = sessions.begin({ state: start.state, nonce: start.nonce, verifier: start.verifier, returnTo });
      if (browser === undefined) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'too many sign-ins in progress; retry later');
      secure(res);
      res.append('Set-Cookie', setCookie(SIGN_IN_COOKIE, browser, { path: '/console/callback', maxAge: 600, sameSite: 'Lax' }));
      res.redirect(303, start.url);
    } catch (err) {
      await fail(res, err instanceof SignInError ? new LeashError('ERR_BACKEND_UNAVAILABLE', err.message) : err, 'console.login', 'GET', undefined);
    }
  });

  router.get('/console/callback', async (req, res) => {
    // The sign-in cookie is single use, whatever happens next.
    res.append('Set-Cookie', setCookie(SIGN_IN_COOKIE, '', { path: '/console/callback', maxAge: 0, sameSite: 'Lax' }));
    const refuse = async (status: number, reason: string, message: string, detail?: Record<string, unknown>) => {
      await deps.audit.record('console.sign_in_failed', { reason, ...(detail ? { detail } : {}) });
      send(res, status, layout({ title: 'Sign-in failed', body: `<p role="alert">${h(message)}</p><p><a href="/console">Sign in again</a></p>` }));
    };
    try {
      const q = req.query as Record<string, unknown>;
      const state = typeof q.state === 'string' ? q.state : '';
      const pending = state ? sessions.complete(state, cookies(req).get(SIGN_IN_COOKIE)) : undefined;
      if (typeof q.error === 'string') {
        const error = /^[A-Za-z0-9_.-]{1,64}$/.test(q.error) ? q.error : 'invalid';
        return await refuse(401, 'idp_error', 'The identity provider did not sign you in.', { error });
      }
      if (!pending) return await refuse(400, 'state_mismatch', 'This sign-in was not started by this browser, or it took too long.');
      if (typeof q.code !== 'string' || q.code.length === 0 || q.code.length > 2048) return await refuse(400, 'state_mismatch', 'The identity provider sent no code.');
      let idToken: string;
      try {
        idToken = await client().redeem(q.code, pending.verifier);
      } catch (err) {
        if (err instanceof SignInError) return await refuse(503, err.reason, err.message);
        throw err;
      }
      let principal: AdminPrincipal;
      try {
        principal = await deps.authenticator().authenticate(`Bearer ${idToken}`);
      } catch (err) {
        if (err instanceof LeashError && err.code === 'ERR_ADMIN_UNAUTHENTICATED')
          return await refuse(401, err.code, 'Your identity token is not accepted as an admin token.', err.detail as Record<string, unknown>);
        throw err;
      }
      const claims = decodeJwt(idToken);
      if (claims.iss !== settings().issuer || claims.nonce !== pending.nonce)
        return await refuse(401, 'ERR_ADMIN_UNAUTHENTICATED', 'Your identity token does not belong to this sign-in.', { check: 'nonce' });
      const now = deps.clock.now();
      const expiresAt = Math.min(now + settings().session_ttl * 1000, (claims.exp ?? 0) * 1000);
      const opened = sessions.open({ idToken, actor: principal.id, expiresAt });
      if (!opened) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'too many console sessions; retry later');
      await deps.audit.record('console.signed_in', {
        actor: principal.id,
        roles: [...principal.roles],
        groups: [...principal.groups],
        session: sessionLabel(opened.session),
        expires_at: expiresAt,
      });
      res.append('Set-Cookie', setCookie(SESSION_COOKIE, opened.cookie, { path: '/console', maxAge: (expiresAt - now) / 1000, sameSite: 'Strict' }));
      // A page, not a redirect: the provider's redirect here is a cross-site navigation, and a
      // SameSite=Strict cookie is sent only on the same-site navigation this page starts.
      send(
        res,
        200,
        layout({
          title: 'Signed in',
          body: `<p>Signed in as <strong>${h(principal.id)}</strong>. <a id="continue" href="${h(pending.returnTo)}">Continue</a></p>`,
        }).replace('<meta charset="utf-8">', `<meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${h(pending.returnTo)}">`),
      );
    } catch (err) {
      await fail(res, err, 'console.callback', 'GET', undefined);
    }
  });

  router.post(
    '/console/logout',
    action(
      'console.logout',
      () => '/console',
      async (_req, signed, _body, res) => {
        sessions.close(signed.session);
        res.append('Set-Cookie', setCookie(SESSION_COOKIE, '', { path: '/console', maxAge: 0, sameSite: 'Strict' }));
        await deps.audit.record('console.signed_out', { actor: signed.principal.id, session: sessionLabel(signed.session), cause: 'signed_out' });
        return 'Signed out.';
      },
    ),
  );

  // ---- approvals
  router.get(
    '/console/approvals',
    page('console.approvals', 'Approvals', '/console/approvals', async (_req, _res, { principal, viewer }) => approvalsPage(viewer, await inbox(principal))),
  );

  router.get('/console/approvals/events', async (req, res) => {
    // HEAD (which express routes here) gets the headers of a stream, not a stream.
    if (req.method === 'HEAD') {
      secure(res);
      return void res.status(200).type('text/event-stream').end();
    }
    let signed: Signed | undefined;
    try {
      signed = await whoIs(req);
      if (!signed) throw new LeashError('ERR_ADMIN_UNAUTHENTICATED', 'sign in to the console first');
      if (!mayDecide(signed.principal, deps.settings().approvals)) throw new LeashError('ERR_ADMIN_FORBIDDEN', "approvals need the 'security' role or membership of an approver group");
      if (live >= MAX_LIVE) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'too many live inboxes open; retry later');
    } catch (err) {
      return fail(res, err, 'console.approvals.events', 'GET', signed);
    }
    const viewer = signed.viewer;
    live++;
    secure(res);
    res.status(200).set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    let last = '';
    let closed = false;
    let ticks = 0;
    const tick = async () => {
      try {
        // The person is checked again on every pass: a signed-out session or expired token ends the stream.
        const now = await whoIs(req);
        if (!now) {
          res.write('event: signed-out\ndata: {}\n\n');
          return stop();
        }
        const fragment = inboxFragment(viewer, await inbox(now.principal));
        if (fragment.html !== last) {
          last = fragment.html;
          res.write(`event: inbox\ndata: ${JSON.stringify(fragment)}\n\n`);
        } else if (++ticks % 10 === 0) res.write(': keep-alive\n\n');
      } catch {
        // The store did not answer this time: the next pass tries again; the page keeps what it shows.
      }
    };
    const timer = setInterval(() => void tick(), settings().live_interval_ms);
    timer.unref();
    const stop = () => {
      if (closed) return;
      closed = true;
      live--;
      clearInterval(timer);
      res.end();
    };
    req.on('close', stop);
    void tick();
  });

  const decide = (state: 'approved' | 'denied') =>
    action(
      `console.approvals.${state === 'approved' ? 'approve' : 'deny'}`,
      () => '/console/approvals',
      async (req, { principal }, body) => {
        const id = param(req, 'id', APPROVAL_ID, 'approval');
        const reason = reasonOf(body, false);
        const view: ApprovalView = await deps.approvals.decide(principal, id, state, reason);
        return `${state === 'approved' ? 'Approved' : 'Denied'} ${String(view.plugin)}'s request ${id}.`;
      },
    );
  router.post('/console/approvals/:id/approve', decide('approved'));
  router.post('/console/approvals/:id/deny', decide('denied'));

  // ---- plugins and the kill switch
  router.get(
    '/console/plugins',
    page('console.plugins', 'Plugins', '/console/plugins', async (_req, _res, { principal, viewer }) => {
      requireRole(principal, PLUGIN_ROUTES.suspended.roles);
      const [suspensions, report, approvals] = await Promise.all([
        deps.suspensions.listSuspensions(),
        deps.review({}).catch(() => undefined),
        mayDecide(principal, deps.settings().approvals) ? deps.approvals.list(principal, undefined, 200) : Promise.resolve([]),
      ]);
      const may = PLUGIN_ROUTES.suspend.roles.some((r) => principal.roles.has(r));
      return pluginsPage(viewer, {
        policy: deps.policy(),
        exceptions: deps.exceptions(),
        suspensions,
        findings: report?.findings,
        approvals,
        killSwitchBlocked: may ? undefined : "The kill switch needs the 'security' role.",
      });
    }),
  );
  const killSwitch = (op: 'suspend' | 'resume') =>
    action(
      `console.plugins.${op}`,
      (req) => `/console/plugins#plugin-${String(req.params.id ?? '').replace(/[^A-Za-z0-9_-]/g, '_')}`,
      async (req, { principal }, body) => {
        requireRole(principal, PLUGIN_ROUTES[op].roles);
        const id = param(req, 'id', PLUGIN_ID, 'plugin');
        if (!deps.policy().plugins.has(id)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such plugin');
        const reason = reasonOf(body, true) as string;
        const by = { actor: principal.id, reason };
        const { changed } = op === 'suspend' ? await suspendPlugin(deps, id, by) : await resumePlugin(deps, id, by);
        if (op === 'suspend') return changed ? `Suspended ${id}: its live credentials are revoked.` : `${id} was already suspended.`;
        return changed ? `Resumed ${id}.` : `${id} was not suspended.`;
      },
    );
  router.post('/console/plugins/:id/suspend', killSwitch('suspend'));
  router.post('/console/plugins/:id/resume', killSwitch('resume'));

  // ---- tasks and their timelines
  const mayActOnAny = (p: AdminPrincipal) => TASK_ROUTES.end.ownedTask.anyOwner.some((r) => p.roles.has(r));
  /** The task an `:id` names, for this person: another orchestrator's task reads as unknown (as in the admin API). */
  async function taskFor(req: Request, principal: AdminPrincipal): Promise<Task> {
    const id = param(req, 'id', TASK_ID, 'task');
    const task = await deps.tasks.get(id);
    if (!task) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such task');
    if (task.createdBy !== principal.id && !mayActOnAny(principal)) throw new LeashError('ERR_TASK_NOT_OWNER', 'no such task', { task: task.id, owner: task.createdBy });
    return task;
  }
  router.get(
    '/console/tasks',
    page('console.tasks', 'Tasks', '/console/tasks', async (req, _res, { principal, viewer }) => {
      requireRole(principal, TASK_ROUTES.get.roles);
      const all = mayActOnAny(principal);
      const query = typeof req.query.q === 'string' ? req.query.q.trim().slice(0, 128) : '';
      let tasks = (await deps.tasks.listActive(500)).filter((t) => all || t.createdBy === principal.id);
      if (query) {
        const q = query.toLowerCase();
        tasks = tasks.filter((t) => t.id.toLowerCase().includes(q) || t.createdBy.toLowerCase().includes(q) || t.plugins.some((p) => p.includes(q)));
        // An exact task id also finds a task that has ended.
        if (tasks.length === 0 && TASK_ID.test(query)) {
          const found = await deps.tasks.get(query);
          if (found && (all || found.createdBy === principal.id)) tasks = [found];
        }
      }
      return tasksPage(viewer, { tasks, query, now: deps.clock.now(), scope: all ? 'all' : 'own' });
    }),
  );
  router.get(
    '/console/tasks/:id',
    page('console.tasks.timeline', 'Task', '/console/tasks', async (req, res, { principal, viewer }) => {
      requireRole(principal, TIMELINE_ROUTES.get.roles);
      const task = await taskFor(req, principal);
      const timeline = await deps.timeline(task);
      const html = taskPage(viewer, {
        timeline,
        now: deps.clock.now(),
        endBlocked: TASK_ROUTES.end.roles.some((r) => principal.roles.has(r)) ? undefined : 'Ending a task needs the orchestrator that opened it or the security role.',
      });
      send(res, 200, layout({ title: `Task ${task.id}`, current: '/console/tasks', viewer, body: html }));
      return '';
    }),
  );
  router.post(
    '/console/tasks/:id/end',
    action(
      'console.tasks.end',
      (req) => `/console/tasks/${encodeURIComponent(String(req.params.id ?? ''))}`,
      async (req, { principal }) => {
        requireRole(principal, TASK_ROUTES.end.roles);
        const task = await taskFor(req, principal);
        // Ending revokes everything issued for the task and audits it (TaskService.onEnded).
        await deps.tasks.end(task.id, principal.id, 'ended');
        return `Ended task ${task.id}: its credentials are revoked.`;
      },
    ),
  );

  // ---- review findings
  router.get(
    '/console/review',
    page('console.review', 'Review findings', '/console/review', async (req, _res, { principal, viewer }) => {
      requireRole(principal, REVIEW_ROUTES.get.roles);
      return reviewPage(viewer, { report: await deps.review({}), filter: reviewFilter(req.query as Record<string, unknown>) });
    }),
  );

  // ---- signing keys
  const opsBlocked = (p: AdminPrincipal) => (KEY_ROUTES.rotate.roles.some((r) => p.roles.has(r)) ? undefined : "Rotating and retiring keys needs the 'ops' role.");
  router.get(
    '/console/keys',
    page('console.keys', 'Signing keys', '/console/keys', async (_req, _res, { principal, viewer }) => {
      requireRole(principal, KEY_ROUTES.list.roles);
      return keysPage(viewer, { backend: deps.keys.backend, keys: deps.keys.list(), opsBlocked: opsBlocked(principal) });
    }),
  );
  router.post(
    '/console/keys/rotate',
    action(
      'console.keys.rotate',
      () => '/console/keys',
      async (_req, { principal }, body) => {
        requireRole(principal, KEY_ROUTES.rotate.roles);
        const change = await translated(() => rotateKey(deps, { actor: principal.id, reason: reasonOf(body, false), force: false }));
        return `Rotated: ${change.transitions.map((t) => `${t.kid} ${t.from ?? 'new'} → ${t.to}`).join(', ') || 'nothing changed'}.${change.warning ? ` ${change.warning}` : ''}`;
      },
    ),
  );
  router.post(
    '/console/keys/:kid/retire',
    action(
      'console.keys.retire',
      () => '/console/keys',
      async (req, { principal }, body) => {
        requireRole(principal, KEY_ROUTES.retire.roles);
        const kid = param(req, 'kid', KID, 'key');
        if (!deps.keys.list().some((k) => k.kid === kid)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such key in the JWKS');
        const change = await translated(() => retireKey(deps, kid, { actor: principal.id, reason: reasonOf(body, false) }));
        return `Retired ${kid}.${change.warning ? ` ${change.warning}` : ''}`;
      },
    ),
  );

  return router;
}

/** The session label audit events carry, from a cookie value (tests tie events to a browser with it). */
export const sessionLabelOf = (cookie: string) => createHash('sha256').update(cookie, 'utf8').digest('hex').slice(0, 16);
