import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

/** What the access log line and the audit events of one HTTP request share. */
export interface RequestContext {
  /** The caller's `X-Request-Id` when it is a sane token, otherwise one made up here. */
  readonly id: string;
  /** The plugin an exchange resolved (a policy id, never a caller-chosen string); set by the exchange. */
  plugin?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The header a request id is accepted from and returned in. */
export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * A caller's id is kept only if it is a short token of safe characters (what tracing
 * systems send: UUIDs, hex ids, `Root=1-...` styles without separators), so nothing a
 * client sends can forge a log line or carry a secret-sized blob into every event.
 */
const SANE_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/;

export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && SANE_ID.test(header) ? header : randomUUID();
}

/** Run `fn` (and everything it starts) as part of the request `context`. */
export function runInRequest<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

/** The request this code runs for, if any (a sweeper or a timer has none). */
export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

/** Record which plugin the current request turned out to be for (the access log says it). */
export function notePlugin(plugin: string): void {
  const ctx = storage.getStore();
  if (ctx) ctx.plugin = plugin;
}
