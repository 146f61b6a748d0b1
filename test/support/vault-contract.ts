import { generateKeyPairSync, randomBytes, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A contract server for HashiCorp Vault, following Vault's HTTP API docs for exactly the
 * endpoints Leash's client uses: the response envelope (`request_id, lease_id, renewable,
 * lease_duration, data, wrap_info, warnings, auth`), errors as `{"errors": [...]}` with
 * 400/403/404/503, `X-Vault-Token` on every authenticated call (403 "permission denied" for
 * an unknown or expired token), tokens with TTL / max TTL / renewability and a per-token
 * capability map (Vault policy paths, `*` suffix and `+` segment globs), KV v2, Transit with
 * REAL signatures (node:crypto), dynamic secrets with leases, AppRole and Kubernetes login,
 * `sys/capabilities-self`, `sys/health`. Driven by the real `node-vault` client; no Vault needed.
 *
 * Not implemented (Leash does not call them): policies as HCL, response wrapping, batch
 * tokens, token create endpoints, KV v1, Transit encrypt/decrypt, lease renew.
 */

export type Capability = 'create' | 'read' | 'update' | 'delete' | 'list' | 'sudo' | 'deny' | 'root';

/** Vault policy paths → capabilities. `*` at the end matches any suffix; `+` one segment. */
export type CapabilityMap = Readonly<Record<string, readonly Capability[]>>;

export interface TokenSpec {
  /** Seconds; 0 = never expires (like root). Default 3600. */
  readonly ttl?: number;
  /** Seconds from creation the token may live in total (renewals are capped). 0 = none. Default 0. */
  readonly maxTtl?: number;
  readonly renewable?: boolean;
  /** Policy names, reported by lookup-self (default `['default']`). */
  readonly policies?: readonly string[];
  /** What the token may do. Default: everything (`'*': all but root`). */
  readonly capabilities?: CapabilityMap;
}

export interface VaultContractOptions {
  /** Milliseconds since the epoch (default Date.now): token and lease expiry. */
  readonly now?: () => number;
  /** KV v2 mounts (default `['secret']`). */
  readonly kvMounts?: readonly string[];
  /** Transit mounts (default `['transit']`). */
  readonly transitMounts?: readonly string[];
  /** AppRole login: the expected role id and secret id and the token it hands out. */
  readonly approle?: { readonly mount?: string; readonly roleId: string; readonly secretId: string; readonly token?: TokenSpec };
  /** Kubernetes login: the role, and the accepted service-account JWT (or a predicate). */
  readonly kubernetes?: { readonly mount?: string; readonly role: string; readonly jwt: string | ((jwt: string) => boolean); readonly token?: TokenSpec };
  /** Lease of dynamic secrets in seconds (default 3600). */
  readonly leaseTtl?: number;
  /** If set, only these dynamic-secret roles exist (e.g. `{ database: ['readonly'] }`). */
  readonly roles?: { readonly database?: readonly string[]; readonly aws?: readonly string[]; readonly pki?: readonly string[] };
}

export interface VaultCall {
  readonly method: string;
  /** Path after `/v1/`, query string removed. */
  readonly path: string;
  readonly namespace: string | undefined;
  /** Whether the call carried an `X-Vault-Token` (never the token itself). */
  readonly authenticated: boolean;
  status: number;
}

export interface ContractLease {
  readonly leaseId: string;
  readonly path: string;
  readonly issuedAt: number;
  readonly ttl: number;
  revokedAt: number | undefined;
  /** The secret data handed out, so tests can check a caller saw exactly it. */
  readonly data: Readonly<Record<string, unknown>>;
}

interface TokenState {
  readonly id: string;
  readonly accessor: string;
  readonly policies: readonly string[];
  readonly capabilities: CapabilityMap;
  readonly creationTtl: number;
  readonly maxTtl: number;
  readonly renewable: boolean;
  readonly issuedAt: number;
  /** 0: never */
  expiresAt: number;
  revoked: boolean;
}

interface KvVersion {
  readonly data: Record<string, unknown>;
  readonly createdAt: number;
}

interface TransitKeyState {
  readonly type: 'ecdsa-p256' | 'ed25519';
  readonly versions: Map<number, { readonly privateKey: KeyObject; readonly publicKey: KeyObject; readonly createdAt: number }>;
  latest: number;
}

class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly string[],
  ) {
    super(errors[0] ?? `status ${status}`);
  }
}

const ALL_CAPS: readonly Capability[] = ['create', 'read', 'update', 'delete', 'list', 'sudo'];
const MOUNT = /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/;
const SEGMENT = /^[A-Za-z0-9_.@=-]+$/;
const rfc3339 = (ms: number) => new Date(ms).toISOString();

export class VaultContract {
  readonly rootToken: string;
  /** Every call, in order: method, path, namespace, whether a token came, status. No bodies. */
  readonly calls: VaultCall[] = [];

  readonly #server: Server;
  readonly #opts: VaultContractOptions;
  readonly #now: () => number;
  readonly #tokens = new Map<string, TokenState>();
  readonly #kv = new Map<string, Map<string, { versions: Map<number, KvVersion>; current: number }>>();
  readonly #transit = new Map<string, Map<string, TransitKeyState>>();
  readonly #leases = new Map<string, ContractLease>();
  readonly #faults: { path: string | RegExp; status: number; times: number }[] = [];
  #port = 0;
  #sealed = false;
  #listening = false;
  #pkiCa: { key: KeyObject; cert: string; der: Buffer } | undefined;

  private constructor(opts: VaultContractOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    for (const m of opts.kvMounts ?? ['secret']) this.#kv.set(m, new Map());
    for (const m of opts.transitMounts ?? ['transit']) this.#transit.set(m, new Map());
    this.rootToken = this.#mint({ ttl: 0, renewable: false, policies: ['root'], capabilities: { '*': ['root'] } }).id;
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  static async start(opts: VaultContractOptions = {}): Promise<VaultContract> {
    const c = new VaultContract(opts);
    await c.up();
    return c;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  /** Stops listening (connections refused) and drops open connections; `up()` reopens on the same port. */
  async down(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async up(): Promise<void> {
    if (this.#listening) return;
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    this.#listening = true;
  }

  async close(): Promise<void> {
    await this.down();
  }

  /** Sealed Vault: every call but `sys/health` answers 503 "Vault is sealed". */
  seal(): void {
    this.#sealed = true;
  }

  unseal(): void {
    this.#sealed = false;
  }

  /** The next `times` calls whose path equals (or matches) `path` answer `status` with a Vault error body. */
  failNext(path: string | RegExp, status: number, times = 1): void {
    this.#faults.push({ path, status, times });
  }

  createToken(spec: TokenSpec = {}): string {
    return this.#mint(spec).id;
  }

  /** Revokes a token now (later calls with it get 403). */
  revokeToken(token: string): void {
    const t = this.#tokens.get(token);
    if (t) t.revoked = true;
  }

  /** Seconds left on a token (undefined if unknown or revoked; 0 = never expires). */
  tokenTtl(token: string): number | undefined {
    const t = this.#live(token);
    if (!t) return undefined;
    return t.expiresAt === 0 ? 0 : Math.max(0, Math.floor((t.expiresAt - this.#now()) / 1000));
  }

  /** Every lease ever issued, live and revoked. */
  leases(): readonly ContractLease[] {
    return [...this.#leases.values()];
  }

  /** The stored KV v2 versions of a path (for inspection). */
  kvVersions(path: string, mount = 'secret'): readonly Record<string, unknown>[] {
    return [...(this.#kv.get(mount)?.get(path)?.versions.values() ?? [])].map((v) => v.data);
  }

  /** The public keys of a Transit key (for inspection), by version. */
  transitPublicKeys(name: string, mount = 'transit'): ReadonlyMap<number, KeyObject> {
    const k = this.#transit.get(mount)?.get(name);
    return new Map([...(k?.versions ?? new Map())].map(([v, e]) => [v, e.publicKey]));
  }

  callsTo(path: string | RegExp): VaultCall[] {
    return this.calls.filter((c) => (typeof path === 'string' ? c.path === path : path.test(c.path)));
  }

  // ------------------------------------------------------------------ plumbing

  #mint(spec: TokenSpec): TokenState {
    const id = `hvs.${randomBytes(18).toString('base64url')}`;
    const ttl = spec.ttl ?? 3600;
    const t: TokenState = {
      id,
      accessor: randomBytes(12).toString('base64url'),
      policies: spec.policies ?? ['default'],
      capabilities: spec.capabilities ?? { '*': ALL_CAPS },
      creationTtl: ttl,
      maxTtl: spec.maxTtl ?? 0,
      renewable: spec.renewable ?? true,
      issuedAt: this.#now(),
      expiresAt: ttl === 0 ? 0 : this.#now() + ttl * 1000,
      revoked: false,
    };
    this.#tokens.set(id, t);
    return t;
  }

  #live(token: string | undefined): TokenState | undefined {
    if (!token) return undefined;
    const t = this.#tokens.get(token);
    if (!t || t.revoked) return undefined;
    if (t.expiresAt !== 0 && t.expiresAt <= this.#now()) return undefined;
    return t;
  }

  #ttlOf(t: TokenState): number {
    return t.expiresAt === 0 ? 0 : Math.max(0, Math.floor((t.expiresAt - this.#now()) / 1000));
  }

  /** Vault's policy matching, simplified: an exact path beats globs; the longest glob wins. */
  static capabilitiesFor(map: CapabilityMap, path: string): Capability[] {
    const exact = map[path];
    if (exact) return [...exact];
    let best: { len: number; caps: readonly Capability[] } | undefined;
    for (const [pattern, caps] of Object.entries(map)) {
      if (!pattern.includes('*') && !pattern.includes('+')) continue;
      const re = new RegExp(
        `^${pattern
          .replace(/[.?^${}()|[\]\\]/g, '\\$&')
          .replace(/\+/g, '[^/]+')
          .replace(/\*$/, '.*')}$`,
      );
      if (re.test(path) && (!best || pattern.length > best.len)) best = { len: pattern.length, caps };
    }
    return best ? [...best.caps] : [];
  }

  #check(t: TokenState, path: string, cap: Capability): void {
    const caps = VaultContract.capabilitiesFor(t.capabilities, path);
    if (caps.includes('deny')) throw new VaultHttpError(403, ['1 error occurred:\n\t* permission denied\n\n']);
    if (caps.includes('root') || caps.includes(cap)) return;
    throw new VaultHttpError(403, ['1 error occurred:\n\t* permission denied\n\n']);
  }

  #send(res: ServerResponse, status: number, body?: unknown): void {
    if (body === undefined) {
      res.writeHead(status, { 'Cache-Control': 'no-store' });
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  #envelope(parts: { data?: unknown; auth?: unknown; leaseId?: string; leaseDuration?: number; renewable?: boolean; warnings?: string[] }): Record<string, unknown> {
    return {
      request_id: randomUUID(),
      lease_id: parts.leaseId ?? '',
      renewable: parts.renewable ?? false,
      lease_duration: parts.leaseDuration ?? 0,
      data: parts.data ?? null,
      wrap_info: null,
      warnings: parts.warnings ?? null,
      auth: parts.auth ?? null,
      mount_type: '',
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://vault');
    const path = url.pathname.startsWith('/v1/') ? url.pathname.slice(4) : url.pathname;
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const call: VaultCall = { method: req.method ?? 'GET', path, namespace: header('x-vault-namespace'), authenticated: !!header('x-vault-token'), status: 0 };
    this.calls.push(call);
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown> = {};
      if (raw.trim() !== '') {
        try {
          const parsed: unknown = JSON.parse(raw);
          if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
          body = parsed as Record<string, unknown>;
        } catch {
          throw new VaultHttpError(400, ['failed to parse JSON input: invalid character']);
        }
      }
      const fault = this.#faults.find((f) => (typeof f.path === 'string' ? f.path === path : f.path.test(path)));
      if (fault) {
        if (--fault.times <= 0) this.#faults.splice(this.#faults.indexOf(fault), 1);
        const text = fault.status === 503 ? 'Vault is sealed' : fault.status === 403 ? 'permission denied' : fault.status === 404 ? '' : `injected fault ${fault.status}`;
        throw new VaultHttpError(fault.status, text ? [text] : []);
      }
      if (path === 'sys/health') return this.#health(res, call);
      if (this.#sealed) throw new VaultHttpError(503, ['Vault is sealed']);
      const list = url.searchParams.get('list') === 'true' || url.searchParams.get('list') === '1' || req.method === 'LIST';
      const result = await this.#route(call.method, path, body, header('x-vault-token'), list, url.searchParams);
      call.status = result === undefined ? 204 : 200;
      this.#send(res, call.status, result);
    } catch (err) {
      // a bug in the contract itself: say what, so a test failure points at it
      const e = err instanceof VaultHttpError ? err : new VaultHttpError(500, [`internal error: ${err instanceof Error ? err.message : String(err)}`]);
      call.status = e.status;
      this.#send(res, e.status, { errors: e.errors });
    }
  }

  #health(res: ServerResponse, call: VaultCall): void {
    call.status = this.#sealed ? 503 : 200;
    this.#send(res, call.status, {
      initialized: true,
      sealed: this.#sealed,
      standby: false,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(this.#now() / 1000),
      version: '1.17.0+contract',
      cluster_name: 'vault-contract',
      cluster_id: 'contract',
    });
  }

  async #route(method: string, path: string, body: Record<string, unknown>, token: string | undefined, list: boolean, query: URLSearchParams): Promise<unknown> {
    // unauthenticated: logins
    const login = /^auth\/(.+)\/login$/.exec(path);
    if (login && (method === 'POST' || method === 'PUT')) return this.#login(login[1]!, body);

    const t = this.#live(token);
    if (!t) throw new VaultHttpError(403, ['permission denied']);

    // the default policy's paths: every token may look itself up, renew itself, ask its capabilities, look up leases
    if (path === 'auth/token/lookup-self' && method === 'GET') return this.#lookupSelf(t);
    if (path === 'auth/token/renew-self' && (method === 'POST' || method === 'PUT')) return this.#renewSelf(t, body);
    if (path === 'sys/capabilities-self' && (method === 'POST' || method === 'PUT')) return this.#capabilitiesSelf(t, body);
    if (path === 'sys/leases/lookup' && (method === 'POST' || method === 'PUT')) return this.#leaseLookup(body);
    if (path === 'auth/token/revoke-self' && (method === 'POST' || method === 'PUT')) {
      t.revoked = true;
      return undefined;
    }
    if (path === 'auth/token/create' && (method === 'POST' || method === 'PUT')) {
      this.#check(t, path, 'update');
      // policies are names only here: a child with `root` may do everything, any other has the default policy's reach
      const policies = Array.isArray(body['policies']) ? body['policies'].filter((p): p is string => typeof p === 'string') : ['default'];
      const child = this.#mint({ ttl: parseDuration(body['ttl']) ?? 3600, renewable: body['renewable'] !== false, policies, capabilities: policies.includes('root') ? { '*': ['root'] } : {} });
      return this.#envelope({ auth: this.#authBlock(child) });
    }

    const revoke = /^sys\/leases\/revoke(?:\/(.+))?$/.exec(path);
    if (revoke && (method === 'POST' || method === 'PUT')) {
      this.#check(t, 'sys/leases/revoke', 'update');
      return this.#leaseRevoke(revoke[1] ?? body['lease_id']);
    }

    const mount = (set: Map<string, unknown>) => [...set.keys()].sort((a, b) => b.length - a.length).find((m) => path.startsWith(`${m}/`));
    const kvMount = mount(this.#kv);
    if (kvMount) return this.#kvRoute(t, kvMount, method, path, path.slice(kvMount.length + 1), body, list, query);
    const transitMount = mount(this.#transit);
    if (transitMount) return this.#transitRoute(t, transitMount, method, path, path.slice(transitMount.length + 1), body);

    const dyn = /^(database|aws)\/creds\/([^/]+)$/.exec(path) ?? /^(pki)\/issue\/([^/]+)$/.exec(path);
    if (dyn) {
      const engine = dyn[1] as 'database' | 'aws' | 'pki';
      const isPki = engine === 'pki';
      if (isPki ? method !== 'POST' && method !== 'PUT' : method !== 'GET' && method !== 'POST' && method !== 'PUT') throw new VaultHttpError(405, ['unsupported operation']);
      this.#check(t, path, method === 'GET' ? 'read' : 'update');
      return this.#dynamic(engine, dyn[2]!, path, body);
    }
    throw new VaultHttpError(404, [`no handler for route "${path}". route entry not found.`]);
  }

  // ------------------------------------------------------------------ auth

  #authBlock(t: TokenState, metadata: Record<string, string> | null = null): Record<string, unknown> {
    return {
      client_token: t.id,
      accessor: t.accessor,
      policies: t.policies,
      token_policies: t.policies,
      metadata,
      lease_duration: this.#ttlOf(t),
      renewable: t.renewable,
      entity_id: '',
      token_type: 'service',
      orphan: true,
      mfa_requirement: null,
      num_uses: 0,
    };
  }

  #login(mountPath: string, body: Record<string, unknown>): unknown {
    const approle = this.#opts.approle;
    if (approle && mountPath === (approle.mount ?? 'approle')) {
      if (typeof body['role_id'] !== 'string' || body['role_id'] === '') throw new VaultHttpError(400, ['missing role_id']);
      if (body['role_id'] !== approle.roleId || body['secret_id'] !== approle.secretId) throw new VaultHttpError(400, ['invalid role or secret ID']);
      const t = this.#mint(approle.token ?? {});
      return this.#envelope({ auth: this.#authBlock(t, { role_name: 'leash' }) });
    }
    const k8s = this.#opts.kubernetes;
    if (k8s && mountPath === (k8s.mount ?? 'kubernetes')) {
      if (typeof body['role'] !== 'string' || body['role'] === '') throw new VaultHttpError(400, ['missing role']);
      if (typeof body['jwt'] !== 'string' || body['jwt'] === '') throw new VaultHttpError(400, ['missing jwt']);
      if (body['role'] !== k8s.role) throw new VaultHttpError(400, [`invalid role name "${body['role']}"`]);
      const ok = typeof k8s.jwt === 'string' ? body['jwt'] === k8s.jwt : k8s.jwt(body['jwt']);
      if (!ok) throw new VaultHttpError(403, ['permission denied']);
      const t = this.#mint(k8s.token ?? {});
      return this.#envelope({ auth: this.#authBlock(t, { role: k8s.role, service_account_name: 'leash' }) });
    }
    throw new VaultHttpError(403, ['permission denied']);
  }

  #lookupSelf(t: TokenState): unknown {
    return this.#envelope({
      data: {
        accessor: t.accessor,
        creation_time: Math.floor(t.issuedAt / 1000),
        creation_ttl: t.creationTtl,
        display_name: 'token',
        entity_id: '',
        expire_time: t.expiresAt === 0 ? null : rfc3339(t.expiresAt),
        explicit_max_ttl: t.maxTtl,
        id: t.id,
        issue_time: rfc3339(t.issuedAt),
        meta: null,
        num_uses: 0,
        orphan: true,
        path: 'auth/token/create',
        policies: t.policies,
        renewable: t.renewable,
        ttl: this.#ttlOf(t),
        type: 'service',
      },
    });
  }

  #renewSelf(t: TokenState, body: Record<string, unknown>): unknown {
    if (!t.renewable || t.expiresAt === 0) throw new VaultHttpError(400, ['lease is not renewable']);
    const inc = typeof body['increment'] === 'number' ? body['increment'] : typeof body['increment'] === 'string' ? parseInt(body['increment'], 10) : t.creationTtl;
    let expires = this.#now() + (Number.isFinite(inc) && inc > 0 ? inc : t.creationTtl) * 1000;
    const warnings: string[] = [];
    if (t.maxTtl > 0) {
      const cap = t.issuedAt + t.maxTtl * 1000;
      if (expires > cap) {
        expires = cap;
        warnings.push('TTL of the token exceeded the effective max_ttl; TTL value is capped accordingly');
      }
    }
    t.expiresAt = expires;
    return this.#envelope({ auth: this.#authBlock(t), warnings });
  }

  #capabilitiesSelf(t: TokenState, body: Record<string, unknown>): unknown {
    const paths = Array.isArray(body['paths']) ? body['paths'] : typeof body['path'] === 'string' ? [body['path']] : undefined;
    if (!paths || paths.length === 0 || !paths.every((p): p is string => typeof p === 'string')) throw new VaultHttpError(400, ['"path" or "paths" must be provided']);
    const data: Record<string, string[]> = {};
    const all = new Set<string>();
    for (const p of paths) {
      const caps = VaultContract.capabilitiesFor(t.capabilities, p.replace(/^\/+/, ''));
      const answer = caps.includes('deny') || caps.length === 0 ? ['deny'] : caps.includes('root') ? ['root'] : caps.sort();
      data[p] = answer;
      answer.forEach((c) => all.add(c));
    }
    const merged = { ...data, capabilities: [...all].sort() };
    // Vault answers the map both at the top level and under `data`
    return { ...this.#envelope({ data: merged }), ...merged };
  }

  // ------------------------------------------------------------------ leases

  #leaseLookup(body: Record<string, unknown>): unknown {
    const id = body['lease_id'];
    const lease = typeof id === 'string' ? this.#leases.get(id) : undefined;
    const expire = lease ? lease.issuedAt + lease.ttl * 1000 : 0;
    if (!lease || lease.revokedAt !== undefined || expire <= this.#now()) throw new VaultHttpError(400, ['invalid lease']);
    return this.#envelope({
      data: { id: lease.leaseId, issue_time: rfc3339(lease.issuedAt), expire_time: rfc3339(expire), last_renewal: null, renewable: true, ttl: Math.floor((expire - this.#now()) / 1000) },
    });
  }

  #leaseRevoke(id: unknown): undefined {
    if (typeof id !== 'string' || id === '') throw new VaultHttpError(400, ['missing lease ID']);
    const lease = this.#leases.get(id);
    // Vault answers 204 for a lease it does not know: nothing to revoke
    if (lease && lease.revokedAt === undefined) lease.revokedAt = this.#now();
    return undefined;
  }

  #newLease(path: string, data: Record<string, unknown>): { leaseId: string; leaseDuration: number } {
    const ttl = this.#opts.leaseTtl ?? 3600;
    const leaseId = `${path}/${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
    this.#leases.set(leaseId, { leaseId, path, issuedAt: this.#now(), ttl, revokedAt: undefined, data });
    return { leaseId, leaseDuration: ttl };
  }

  #dynamic(engine: 'database' | 'aws' | 'pki', role: string, path: string, body: Record<string, unknown>): unknown {
    const allowed = this.#opts.roles?.[engine];
    if (allowed && !allowed.includes(role)) throw new VaultHttpError(400, [`unknown role: ${role}`]);
    let data: Record<string, unknown>;
    if (engine === 'database') {
      data = { username: `v-leash-${role}-${randomBytes(6).toString('hex')}`, password: randomBytes(15).toString('base64url') };
    } else if (engine === 'aws') {
      data = { access_key: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, secret_key: randomBytes(30).toString('base64'), security_token: null };
    } else {
      const cn = body['common_name'];
      if (typeof cn !== 'string' || cn === '')
        throw new VaultHttpError(400, ['the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false']);
      data = this.#issueCert(cn);
    }
    const lease = this.#newLease(path, data);
    return this.#envelope({ data, leaseId: lease.leaseId, leaseDuration: lease.leaseDuration, renewable: engine !== 'pki' });
  }

  /** A real X.509 certificate (ECDSA P-256), issued by the contract's own CA. */
  #issueCert(commonName: string): Record<string, unknown> {
    if (!this.#pkiCa) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const der = buildCertificate({
        serial: randomBytes(16),
        issuer: 'Leash Contract CA',
        subject: 'Leash Contract CA',
        notBefore: this.#now() - 60_000,
        notAfter: this.#now() + 10 * 365 * 86400_000,
        subjectKey: publicKey,
        issuerKey: privateKey,
        ca: true,
      });
      this.#pkiCa = { key: privateKey, der, cert: toPem(der, 'CERTIFICATE') };
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const serial = randomBytes(16);
    serial[0]! &= 0x7f;
    const ttl = this.#opts.leaseTtl ?? 3600;
    const der = buildCertificate({
      serial,
      issuer: 'Leash Contract CA',
      subject: commonName,
      notBefore: this.#now() - 60_000,
      notAfter: this.#now() + ttl * 1000,
      subjectKey: publicKey,
      issuerKey: this.#pkiCa.key,
      ca: false,
    });
    return {
      certificate: toPem(der, 'CERTIFICATE'),
      issuing_ca: this.#pkiCa.cert,
      ca_chain: [this.#pkiCa.cert],
      private_key: privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
      private_key_type: 'ec',
      serial_number: [...serial].map((b) => b.toString(16).padStart(2, '0')).join(':'),
      expiration: Math.floor((this.#now() + ttl * 1000) / 1000),
    };
  }

  // ------------------------------------------------------------------ KV v2

  #kvRoute(t: TokenState, mount: string, method: string, fullPath: string, rest: string, body: Record<string, unknown>, list: boolean, query: URLSearchParams): unknown {
    const store = this.#kv.get(mount)!;
    const data = /^data\/(.+)$/.exec(rest);
    const meta = /^metadata\/(.*)$/.exec(rest);
    if (data) {
      const key = data[1]!;
      if (!key.split('/').every((s) => SEGMENT.test(s))) throw new VaultHttpError(400, ['invalid path']);
      const entry = store.get(key);
      if (method === 'GET') {
        this.#check(t, fullPath, 'read');
        const want = query.get('version') ? Number(query.get('version')) : entry?.current;
        const v = want !== undefined ? entry?.versions.get(want) : undefined;
        if (!entry || !v || want === undefined) throw new VaultHttpError(404, []);
        return this.#envelope({ data: { data: v.data, metadata: { created_time: rfc3339(v.createdAt), custom_metadata: null, deletion_time: '', destroyed: false, version: want } } });
      }
      if (method === 'POST' || method === 'PUT') {
        this.#check(t, fullPath, entry ? 'update' : 'create');
        const payload = body['data'];
        if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) throw new VaultHttpError(400, ['no data provided']);
        const options = body['options'];
        const cas = options && typeof options === 'object' ? (options as Record<string, unknown>)['cas'] : undefined;
        if (cas !== undefined) {
          if (typeof cas !== 'number' || !Number.isInteger(cas) || cas < 0) throw new VaultHttpError(400, ['check-and-set parameter must be a non-negative integer']);
          if (cas !== (entry?.current ?? 0)) throw new VaultHttpError(400, ['check-and-set parameter did not match the current version']);
        }
        const e = entry ?? { versions: new Map<number, KvVersion>(), current: 0 };
        e.current += 1;
        const now = this.#now();
        e.versions.set(e.current, { data: structuredClone(payload as Record<string, unknown>), createdAt: now });
        store.set(key, e);
        return this.#envelope({ data: { created_time: rfc3339(now), custom_metadata: null, deletion_time: '', destroyed: false, version: e.current } });
      }
      throw new VaultHttpError(405, ['unsupported operation']);
    }
    if (meta) {
      const key = meta[1]!;
      if (method === 'DELETE') {
        this.#check(t, fullPath, 'delete');
        store.delete(key);
        return undefined;
      }
      if (method === 'GET' && list) {
        this.#check(t, fullPath, 'list');
        const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
        const keys = new Set<string>();
        for (const k of store.keys()) {
          if (!k.startsWith(prefix)) continue;
          const tail = k.slice(prefix.length);
          const slash = tail.indexOf('/');
          keys.add(slash === -1 ? tail : tail.slice(0, slash + 1));
        }
        if (keys.size === 0) throw new VaultHttpError(404, []);
        return this.#envelope({ data: { keys: [...keys].sort() } });
      }
      throw new VaultHttpError(405, ['unsupported operation']);
    }
    throw new VaultHttpError(404, [`no handler for route "${fullPath}". route entry not found.`]);
  }

  // ------------------------------------------------------------------ Transit

  #transitKeyData(name: string, k: TransitKeyState): Record<string, unknown> {
    const keys: Record<string, unknown> = {};
    for (const [v, e] of k.versions) {
      keys[String(v)] = {
        creation_time: rfc3339(e.createdAt),
        name: k.type === 'ed25519' ? 'ed25519' : 'P-256',
        public_key: k.type === 'ed25519' ? rawEd25519(e.publicKey).toString('base64') : e.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      };
    }
    return {
      allow_plaintext_backup: false,
      auto_rotate_period: 0,
      deletion_allowed: false,
      derived: false,
      exportable: false,
      imported_key: false,
      keys,
      latest_version: k.latest,
      min_available_version: 0,
      min_decryption_version: 1,
      min_encryption_version: 0,
      name,
      supports_decryption: false,
      supports_derivation: k.type === 'ed25519',
      supports_encryption: false,
      supports_signing: true,
      type: k.type,
    };
  }

  #newVersion(k: TransitKeyState): void {
    const pair = k.type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    k.latest += 1;
    k.versions.set(k.latest, { privateKey: pair.privateKey, publicKey: pair.publicKey, createdAt: this.#now() });
  }

  #transitRoute(t: TokenState, mount: string, method: string, fullPath: string, rest: string, body: Record<string, unknown>): unknown {
    const keys = this.#transit.get(mount)!;
    let m: RegExpExecArray | null;
    if ((m = /^keys\/([^/]+)$/.exec(rest))) {
      const name = m[1]!;
      if (!SEGMENT.test(name)) throw new VaultHttpError(400, ['invalid key name']);
      const k = keys.get(name);
      if (method === 'GET') {
        this.#check(t, fullPath, 'read');
        if (!k) throw new VaultHttpError(404, []);
        return this.#envelope({ data: this.#transitKeyData(name, k) });
      }
      if (method === 'POST' || method === 'PUT') {
        this.#check(t, fullPath, k ? 'update' : 'create');
        const type = body['type'] ?? 'aes256-gcm96';
        if (type !== 'ecdsa-p256' && type !== 'ed25519') throw new VaultHttpError(400, [`unknown key type: ${String(type)}`]);
        if (k) return this.#envelope({ data: this.#transitKeyData(name, k) }); // Vault: creating an existing key is a no-op
        const created: TransitKeyState = { type, versions: new Map(), latest: 0 };
        this.#newVersion(created);
        keys.set(name, created);
        return this.#envelope({ data: this.#transitKeyData(name, created) });
      }
      throw new VaultHttpError(405, ['unsupported operation']);
    }
    if ((m = /^keys\/([^/]+)\/rotate$/.exec(rest)) && (method === 'POST' || method === 'PUT')) {
      this.#check(t, fullPath, 'update');
      const k = keys.get(m[1]!);
      if (!k) throw new VaultHttpError(400, ['key not found']);
      this.#newVersion(k);
      return this.#envelope({ data: this.#transitKeyData(m[1]!, k) });
    }
    if ((m = /^sign\/([^/]+)(?:\/([^/]+))?$/.exec(rest)) && (method === 'POST' || method === 'PUT')) {
      this.#check(t, fullPath, 'update');
      const k = keys.get(m[1]!);
      if (!k) throw new VaultHttpError(400, ['signing key not found']);
      const hash = m[2] ?? (typeof body['hash_algorithm'] === 'string' ? body['hash_algorithm'] : 'sha2-256');
      if (k.type === 'ecdsa-p256' && hash !== 'sha2-256') throw new VaultHttpError(400, [`unsupported hash algorithm ${hash}`]);
      const input = body['input'];
      if (typeof input !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(input)) throw new VaultHttpError(400, ['unable to decode input as base64: illegal base64 data']);
      const rawVersion = body['key_version'];
      const version = rawVersion === undefined || rawVersion === 0 ? k.latest : typeof rawVersion === 'number' ? rawVersion : NaN;
      const entry = k.versions.get(version);
      if (!entry) throw new VaultHttpError(400, ['requested version for signing is not valid']);
      const marshaling = body['marshaling_algorithm'] ?? 'asn1';
      if (marshaling !== 'asn1' && marshaling !== 'jws') throw new VaultHttpError(400, [`unsupported marshaling algorithm ${String(marshaling)}`]);
      const bytes = Buffer.from(input, 'base64');
      let sig: string;
      if (k.type === 'ed25519') {
        sig = cryptoSign(null, bytes, entry.privateKey).toString('base64');
      } else if (marshaling === 'jws') {
        sig = cryptoSign('sha256', bytes, { key: entry.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
      } else {
        sig = cryptoSign('sha256', bytes, { key: entry.privateKey, dsaEncoding: 'der' }).toString('base64');
      }
      return this.#envelope({ data: { key_version: version, signature: `vault:v${version}:${sig}` } });
    }
    throw new VaultHttpError(404, [`no handler for route "${fullPath}". route entry not found.`]);
  }
}

export function startVaultContract(opts: VaultContractOptions = {}): Promise<VaultContract> {
  for (const m of [...(opts.kvMounts ?? []), ...(opts.transitMounts ?? [])]) if (!MOUNT.test(m)) throw new TypeError(`bad mount ${m}`);
  return VaultContract.start(opts);
}

/** Vault durations: seconds as a number, or `90s` / `10m` / `1h`. */
function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  const m = typeof v === 'string' ? /^(\d+)([smh]?)$/.exec(v) : null;
  if (!m) return undefined;
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600 } as Record<string, number>)[m[2]!]!;
}

// ------------------------------------------------------------------ a minimal DER / X.509 writer

function rawEd25519(publicKey: KeyObject): Buffer {
  // SPKI DER of an Ed25519 key: a 12-byte header, then the raw 32 bytes
  return publicKey.export({ type: 'spki', format: 'der' }).subarray(12);
}

function toPem(der: Buffer, label: string): string {
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function tlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  const head = len < 0x80 ? Buffer.from([tag, len]) : len < 0x100 ? Buffer.from([tag, 0x81, len]) : Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  return Buffer.concat([head, content]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const oid = (bytes: number[]) => tlv(0x06, Buffer.from(bytes));
const OID_ECDSA_SHA256 = oid([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
const OID_CN = oid([0x55, 0x04, 0x03]);
const OID_BASIC_CONSTRAINTS = oid([0x55, 0x1d, 0x13]);

function derInteger(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

function name(cn: string): Buffer {
  return seq(tlv(0x31, seq(OID_CN, tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

function utcTime(ms: number): Buffer {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  const year = d.getUTCFullYear();
  const s = `${p(year % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return year < 2050 ? tlv(0x17, Buffer.from(s)) : tlv(0x18, Buffer.from(`${Math.floor(year / 100)}${s}`));
}

function buildCertificate(c: { serial: Buffer; issuer: string; subject: string; notBefore: number; notAfter: number; subjectKey: KeyObject; issuerKey: KeyObject; ca: boolean }): Buffer {
  const spki = c.subjectKey.export({ type: 'spki', format: 'der' });
  const basicConstraints = seq(OID_BASIC_CONSTRAINTS, tlv(0x01, Buffer.from([0xff])), tlv(0x04, c.ca ? seq(tlv(0x01, Buffer.from([0xff]))) : seq()));
  const tbs = seq(
    tlv(0xa0, derInteger(Buffer.from([2]))),
    derInteger(c.serial),
    seq(OID_ECDSA_SHA256),
    name(c.issuer),
    seq(utcTime(c.notBefore), utcTime(c.notAfter)),
    name(c.subject),
    spki,
    tlv(0xa3, seq(basicConstraints)),
  );
  const signature = cryptoSign('sha256', tbs, { key: c.issuerKey, dsaEncoding: 'der' });
  return seq(tbs, seq(OID_ECDSA_SHA256), tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
}
