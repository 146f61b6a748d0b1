import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Console sessions and sign-ins in progress, in this replica's memory: a session is
 * served by the replica that opened it (sticky sessions behind a load balancer; a restart
 * signs everyone out). The cookie holds a random id; the map is keyed by its SHA-256, so
 * neither a heap dump nor an audit event holds a usable cookie. The ID token is kept and
 * verified again on every request: its expiry, the issuer's keys and the role mapping in
 * force apply to every call, as for a bearer admin token.
 */

export interface ConsoleSession {
  /** SHA-256 of the cookie value, hex. */
  readonly key: string;
  readonly idToken: string;
  /** The synchronizer token every state-changing form carries. */
  readonly csrf: string;
  readonly actor: string;
  readonly expiresAt: number;
  /** One message for the next page (what the last action did). */
  flash?: { readonly kind: 'ok' | 'error'; readonly text: string };
}

export interface PendingSignIn {
  readonly state: string;
  readonly nonce: string;
  readonly verifier: string;
  /** SHA-256 of the sign-in cookie that must come back with the provider's answer. */
  readonly browser: string;
  readonly returnTo: string;
  readonly expiresAt: number;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest('hex');
export const newSecret = () => randomBytes(32).toString('base64url');

/** Constant-time equality of two strings (false when lengths differ). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The short id audit events carry for a session (a digest prefix: ties events together, opens nothing). */
export const sessionLabel = (s: ConsoleSession) => s.key.slice(0, 16);

const MAX_SESSIONS = 10_000;
const MAX_SIGN_INS = 1_000;
const SIGN_IN_TTL_MS = 600_000;

export class ConsoleSessions {
  readonly #sessions = new Map<string, ConsoleSession>();
  readonly #signIns = new Map<string, PendingSignIn>();

  constructor(private readonly now: () => number) {}

  #sweep(): void {
    const now = this.now();
    for (const [k, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(k);
    for (const [k, s] of this.#signIns) if (s.expiresAt <= now) this.#signIns.delete(k);
  }

  /** Opens a session; returns the cookie value (shown once, never stored). Undefined when full. */
  open(input: { idToken: string; actor: string; expiresAt: number }): { cookie: string; session: ConsoleSession } | undefined {
    if (this.#sessions.size >= MAX_SESSIONS) this.#sweep();
    if (this.#sessions.size >= MAX_SESSIONS) return undefined;
    const cookie = newSecret();
    const session: ConsoleSession = { key: digest(cookie), idToken: input.idToken, csrf: newSecret(), actor: input.actor, expiresAt: input.expiresAt };
    this.#sessions.set(session.key, session);
    return { cookie, session };
  }

  /** The live session of a cookie value, or undefined. */
  find(cookie: string | undefined): ConsoleSession | undefined {
    if (!cookie) return undefined;
    const key = digest(cookie);
    const session = this.#sessions.get(key);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return session;
  }

  close(session: ConsoleSession): void {
    this.#sessions.delete(session.key);
  }

  /** Remembers a sign-in in progress; returns the browser cookie that must come back with it. Undefined when full. */
  begin(input: { state: string; nonce: string; verifier: string; returnTo: string }): string | undefined {
    if (this.#signIns.size >= MAX_SIGN_INS) this.#sweep();
    if (this.#signIns.size >= MAX_SIGN_INS) return undefined;
    const browser = newSecret();
    this.#signIns.set(input.state, { ...input, browser: digest(browser), expiresAt: this.now() + SIGN_IN_TTL_MS });
    return browser;
  }

  /** The sign-in `state` names, once, if this browser started it and it has not expired. */
  complete(state: string, browserCookie: string | undefined): PendingSignIn | undefined {
    const pending = this.#signIns.get(state);
    if (!pending) return undefined;
    this.#signIns.delete(state);
    if (pending.expiresAt <= this.now() || browserCookie === undefined || !sameSecret(pending.browser, digest(browserCookie))) return undefined;
    return pending;
  }
}
