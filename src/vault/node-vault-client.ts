import nodeVault from 'node-vault';
import { VaultError, type DynamicSecret, type KvSecret, type TokenInfo, type TransitKey, type TransitKeyVersion, type VaultClient, type VaultErrorReason } from './vault-client.js';

/**
 * `VaultClient` over node-vault 0.12. node-vault answers `Promise<any>` and throws untyped
 * errors, so this module is the one place that checks Vault's answers and turns every
 * failure into a `VaultError`. node-vault traps avoided here (STACK.md): no KV v2 or Transit
 * helpers (plain read/write on the documented paths), never `client.rotate()` (that rotates
 * Vault's barrier key), no generated LIST calls.
 */

export interface VaultClientOptions {
  readonly address: string;
  readonly namespace?: string;
  readonly timeoutMs: number;
  /** Read on every call: the session renews or replaces the token underneath. */
  readonly token: () => string | undefined;
}

export type VaultMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One Vault HTTP call through node-vault: the answer body (undefined for 204) or a VaultError. */
export interface VaultTransport {
  call(method: VaultMethod, path: string, body?: Record<string, unknown>, token?: string): Promise<Record<string, unknown> | undefined>;
}

type NodeVaultClient = ReturnType<typeof nodeVault>;

const MOUNT = /^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/;
const SEGMENT = /^[A-Za-z0-9_.@=-]+$/;
const NAME = /^[A-Za-z0-9_.-]+$/;
const SIGNATURE = /^vault:v(\d+):([A-Za-z0-9+/_=-]+)$/;
const CAS_MISMATCH = /check-and-set parameter did not match the current version/i;

/** Low-level transport; the session uses it for logins and renewals, the client for everything else. */
export function createVaultTransport(opts: { address: string; namespace?: string; timeoutMs: number }): VaultTransport {
  const nv: NodeVaultClient = nodeVault({
    endpoint: opts.address,
    apiVersion: 'v1',
    // node-vault logs request bodies (tokens, secret ids) through `debug`; never
    debug: () => undefined,
    // VAULT_SKIP_VERIFY in the environment would silently turn TLS checks off
    rpDefaults: { strictSSL: true, timeout: opts.timeoutMs },
  } as Parameters<typeof nodeVault>[0]);
  // node-vault falls back to VAULT_TOKEN / VAULT_NAMESPACE / VAULT_PREFIX from the environment:
  // Leash passes the token per call and takes the namespace from config only
  const raw = nv as unknown as { token: string; namespace: string; pathPrefix: string };
  raw.token = '';
  raw.namespace = opts.namespace ?? '';
  raw.pathPrefix = '';

  return {
    async call(method, path, body, token) {
      const headers: Record<string, string> = {};
      if (token) headers['X-Vault-Token'] = token;
      const requestOptions = { headers, timeout: opts.timeoutMs };
      let answer: unknown;
      try {
        switch (method) {
          case 'GET':
            answer = await nv.read(path, requestOptions);
            break;
          case 'POST':
            answer = await nv.write(path, body ?? {}, requestOptions);
            break;
          case 'DELETE':
            answer = await nv.delete(path, requestOptions);
            break;
          case 'PUT':
            // node-vault has no generic PUT; `request` is its documented escape hatch
            answer = await nv.request({ ...requestOptions, path: `/${path}`, method: 'PUT', json: body ?? {} });
            break;
        }
      } catch (err) {
        throw toVaultError(err, method, path, token);
      }
      if (answer === undefined || answer === null || answer === '') return undefined;
      if (typeof answer !== 'object' || Array.isArray(answer)) throw new VaultError('malformed', 200, `vault ${method} ${path}: answer is not a JSON object`);
      return answer as Record<string, unknown>;
    },
  };
}

/** Maps whatever node-vault threw (its ApiResponseError, an axios error, a tv4 error) to a VaultError. */
export function toVaultError(err: unknown, method: string, path: string, token?: string): VaultError {
  const e = err as { response?: { statusCode?: unknown; body?: unknown }; code?: unknown; message?: unknown } | undefined;
  const status = typeof e?.response?.statusCode === 'number' ? e.response.statusCode : 0;
  const where = `vault ${method} ${path}`;
  if (status === 0) {
    const code = typeof e?.code === 'string' ? e.code : 'error';
    return new VaultError('unreachable', 0, `${where}: unreachable (${code})`, { cause: sanitizeCause(err) });
  }
  const text = scrub(vaultErrorText(e?.response?.body), token);
  const reason: VaultErrorReason =
    status === 400 && CAS_MISMATCH.test(text)
      ? 'cas_mismatch'
      : status === 400 || status === 405
        ? 'invalid'
        : status === 403 || status === 401
          ? 'denied'
          : status === 404
            ? 'not_found'
            : status === 503
              ? 'sealed'
              : 'server';
  return new VaultError(reason, status, `${where}: ${status}${text ? ` ${text}` : ''}`);
}

function vaultErrorText(body: unknown): string {
  if (body && typeof body === 'object' && Array.isArray((body as { errors?: unknown }).errors)) {
    return (body as { errors: unknown[] }).errors
      .filter((x): x is string => typeof x === 'string')
      .join('; ')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, 300);
  }
  return '';
}

/** Vault never echoes a token in an error, but a log line must not carry one even if it did. */
function scrub(text: string, token?: string): string {
  let out = text.replace(/\b(?:hv[sbr]\.|s\.)[A-Za-z0-9_-]{20,}/g, '[redacted]');
  if (token) out = out.split(token).join('[redacted]');
  return out;
}

/** An axios error carries the request config, headers included (the token): keep only name/code/message. */
function sanitizeCause(err: unknown): Error {
  const e = err as { name?: unknown; code?: unknown; message?: unknown } | undefined;
  const out = new Error(typeof e?.message === 'string' ? e.message : 'request failed');
  out.name = typeof e?.name === 'string' ? e.name : 'Error';
  if (typeof e?.code === 'string') (out as Error & { code?: string }).code = e.code;
  return out;
}

// ------------------------------------------------------------------ shape checks

function malformed(what: string): VaultError {
  return new VaultError('malformed', 200, `vault answer: ${what}`);
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw malformed(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw malformed(`${what} is not a non-negative integer`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw malformed(`${what} is not a string`);
  return v;
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw malformed(`${what} is not a boolean`);
  return v;
}

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw malformed(`${what} is not a list of strings`);
  return v as string[];
}

function required(answer: Record<string, unknown> | undefined, what: string): Record<string, unknown> {
  if (!answer) throw malformed(`${what}: empty answer`);
  return answer;
}

function checkMount(mount: string): string {
  if (!MOUNT.test(mount)) throw new VaultError('invalid', 0, `vault: bad mount path ${JSON.stringify(mount)}`);
  return mount;
}

/** A secret path: segments of safe characters, no `.`/`..`, no query, no leading slash. */
function checkPath(path: string): string {
  const segments = path.split('/');
  if (!segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')) throw new VaultError('invalid', 0, `vault: bad path ${JSON.stringify(path)}`);
  return path;
}

function checkName(name: string): string {
  if (!NAME.test(name) || name === '.' || name === '..') throw new VaultError('invalid', 0, `vault: bad key name ${JSON.stringify(name)}`);
  return name;
}

function decodeSignature(b64: string, type: 'ecdsa-p256' | 'ed25519'): Uint8Array {
  // jws marshaling (ECDSA) is base64url; Ed25519 signatures are standard base64
  const bytes = Buffer.from(b64, type === 'ecdsa-p256' ? 'base64url' : 'base64');
  if (bytes.length !== 64) throw malformed(`signature is ${bytes.length} bytes, expected 64`);
  return new Uint8Array(bytes);
}

// ------------------------------------------------------------------ the client

export function createVaultClient(opts: VaultClientOptions): VaultClient {
  const transport = createVaultTransport(opts);
  const call = (method: VaultMethod, path: string, body?: Record<string, unknown>) => transport.call(method, path, body, opts.token());
  const absentOn404 = async <T>(p: Promise<T>): Promise<T | undefined> => {
    try {
      return await p;
    } catch (err) {
      if (err instanceof VaultError && err.reason === 'not_found') return undefined;
      throw err;
    }
  };

  return {
    async kvRead(mount, path) {
      const answer = await absentOn404(call('GET', `${checkMount(mount)}/data/${checkPath(path)}`));
      if (!answer) return undefined;
      const data = obj(answer['data'], 'kv data');
      // a soft-deleted or destroyed newest version answers `data: null`
      if (data['data'] === null) return undefined;
      const metadata = obj(data['metadata'], 'kv metadata');
      const secret: KvSecret = { data: obj(data['data'], 'kv data.data'), version: int(metadata['version'], 'kv metadata.version') };
      return secret;
    },

    async kvWrite(mount, path, data, cas) {
      const body: Record<string, unknown> = { data };
      if (cas !== undefined) body['options'] = { cas };
      const answer = required(await call('POST', `${checkMount(mount)}/data/${checkPath(path)}`, body), 'kv write');
      return int(obj(answer['data'], 'kv write data')['version'], 'kv write version');
    },

    async kvDestroy(mount, path) {
      // already gone is gone
      await absentOn404(call('DELETE', `${checkMount(mount)}/metadata/${checkPath(path)}`));
    },

    async transitCreateKey(mount, name, type) {
      await call('POST', `${checkMount(mount)}/keys/${checkName(name)}`, { type });
    },

    async transitReadKey(mount, name) {
      const answer = await absentOn404(call('GET', `${checkMount(mount)}/keys/${checkName(name)}`));
      if (!answer) return undefined;
      const data = obj(answer['data'], 'transit key');
      const keys = obj(data['keys'], 'transit key.keys');
      const versions: TransitKeyVersion[] = Object.entries(keys).map(([v, entry]) => {
        if (!/^[1-9]\d*$/.test(v)) throw malformed(`transit key version ${JSON.stringify(v)}`);
        const e = obj(entry, `transit key version ${v}`);
        const createdAt = Date.parse(str(e['creation_time'], 'transit key creation_time'));
        if (Number.isNaN(createdAt)) throw malformed('transit key creation_time is not a time');
        const publicKey = str(e['public_key'], 'transit key public_key');
        if (publicKey === '') throw malformed('transit key public_key is empty');
        return { version: Number(v), publicKey, createdAt };
      });
      versions.sort((a, b) => a.version - b.version);
      const key: TransitKey = {
        name: str(data['name'], 'transit key name'),
        type: str(data['type'], 'transit key type'),
        latestVersion: int(data['latest_version'], 'transit key latest_version'),
        versions,
      };
      if (!versions.some((v) => v.version === key.latestVersion)) throw malformed('transit key latest_version has no public key');
      return key;
    },

    async transitRotate(mount, name) {
      await call('POST', `${checkMount(mount)}/keys/${checkName(name)}/rotate`, {});
    },

    async transitSign(mount, name, version, input, type) {
      if (!Number.isInteger(version) || version < 1) throw new VaultError('invalid', 0, `vault: bad key version ${version}`);
      const base = `${checkMount(mount)}/sign/${checkName(name)}`;
      const b64 = Buffer.from(input).toString('base64');
      const answer =
        type === 'ecdsa-p256'
          ? await call('POST', `${base}/sha2-256`, { input: b64, key_version: version, marshaling_algorithm: 'jws' })
          : await call('POST', base, { input: b64, key_version: version });
      const data = obj(required(answer, 'transit sign')['data'], 'transit sign data');
      const m = SIGNATURE.exec(str(data['signature'], 'transit signature'));
      if (!m) throw malformed('transit signature is not vault:vN:<signature>');
      if (Number(m[1]) !== version) throw malformed(`transit signed with version ${m[1]}, asked for ${version}`);
      return decodeSignature(m[2]!, type);
    },

    async issueSecret(path, method, params) {
      checkPath(path);
      let answer: Record<string, unknown> | undefined;
      if (method === 'read') {
        const query = new URLSearchParams(params).toString();
        answer = await call('GET', query ? `${path}?${query}` : path);
      } else {
        answer = await call('POST', path, { ...params });
      }
      const a = required(answer, 'dynamic secret');
      const secret: DynamicSecret = {
        // '' when the engine made no lease (e.g. PKI without generate_lease)
        leaseId: str(a['lease_id'], 'lease_id'),
        leaseDuration: int(a['lease_duration'], 'lease_duration'),
        renewable: bool(a['renewable'], 'renewable'),
        data: obj(a['data'], 'secret data'),
      };
      return secret;
    },

    async revokeLease(leaseId) {
      if (leaseId === '' || /[\s?#]/.test(leaseId)) throw new VaultError('invalid', 0, 'vault: bad lease id');
      await absentOn404(call('PUT', 'sys/leases/revoke', { lease_id: leaseId }));
    },

    async lookupSelf() {
      const data = obj(required(await call('GET', 'auth/token/lookup-self'), 'lookup-self')['data'], 'lookup-self data');
      // `data.id` is the token itself: never copied out
      const info: TokenInfo = {
        ttl: int(data['ttl'], 'token ttl'),
        renewable: bool(data['renewable'] ?? false, 'token renewable'),
        policies: data['policies'] === null ? [] : strings(data['policies'], 'token policies'),
      };
      return info;
    },

    async capabilities(paths) {
      if (paths.length === 0) return {};
      const answer = required(await call('POST', 'sys/capabilities-self', { paths: [...paths] }), 'capabilities-self');
      const data = answer['data'] && typeof answer['data'] === 'object' ? (answer['data'] as Record<string, unknown>) : answer;
      const out: Record<string, readonly string[]> = {};
      for (const p of paths) out[p] = strings(data[p] ?? answer[p], `capabilities of ${p}`);
      return out;
    },
  };
}
