import type Provider from 'oidc-provider';

/** Where a request's OIDCContext lives on its koa context, instead of a per-request getter. */
const OIDC = Symbol('leash.oidc');

type Ctx = Record<PropertyKey, unknown>;

/**
 * Makes oidc-provider's per-request `ctx.oidc` cheap for the garbage collector.
 *
 * Why: on every routed request oidc-provider (9.x, `ensureOIDC`) defines `ctx.oidc` as a
 * getter closure over the request. With that closure stored on the context, V8's young
 * generation collections kept each finished request's whole object graph (~10-12 KB per
 * exchange here) alive until a full collection, and promoting it made scavenges of
 * 10-21 ms, the broker's largest latency stall at a comfortable load
 * (docs/performance.md, "The GC stall"). Without the closure, ~0.3-0.8 KB survive.
 *
 * How: each koa context is wrapped in a Proxy whose only trap is `defineProperty`. When
 * oidc-provider defines `oidc`, the trap builds the OIDCContext at once (the getter it was
 * given, called once; every routed request reads it anyway) and keeps it under a symbol;
 * the closure is dropped. One getter shared by all contexts, on the app's context
 * prototype, returns it: `undefined` before oidc-provider's router has set it, as before.
 * A second definition is refused, as oidc-provider's non-configurable property was.
 */
export function holdOidcContextWithoutClosure(provider: Provider): void {
  Object.defineProperty(provider.context, 'oidc', {
    configurable: true,
    get(this: Ctx) {
      return this[OIDC];
    },
  });
  const traps: ProxyHandler<Ctx> = {
    defineProperty(target, key, desc) {
      if (key !== 'oidc' || typeof desc.get !== 'function') return Reflect.defineProperty(target, key, desc);
      if (target[OIDC] !== undefined) return false;
      target[OIDC] = desc.get();
      return true;
    },
  };
  const create = provider.createContext.bind(provider);
  provider.createContext = ((req, res) => new Proxy(create(req, res) as unknown as Ctx, traps)) as typeof provider.createContext;
}
