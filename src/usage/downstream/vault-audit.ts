import { readFile } from 'node:fs/promises';
import type { Candidate } from './link.js';

/*
 * Vault audit-device logs (the `file` device; `socket` and `syslog` carry the same JSON):
 * one JSON object per line, `type` `request` or `response`, `time`, `auth` (the caller:
 * `accessor`, `display_name`, `entity_id`, `policies`...), `request` (`id`, `operation`,
 * `path`, `remote_address`, `mount_type`, `data`), and for responses `response` (`secret`
 * with `lease_id` for a dynamic secret, `auth` with the new token's `accessor` when one is
 * minted) and `error`. Strings are HMAC-SHA256'd by default (`hmac-sha256:<hex>`), the
 * token accessor too unless the device runs with `hmac_accessor=false`; a hashed value
 * still matches itself within one device, so a token minted for a Leash credential links
 * the requests made with it. See docs/usage.md for the references.
 */

const MAX = 512;
const cut = (v: unknown): string => (typeof v === 'string' ? v.slice(0, MAX) : '');
const HASHED = /^hmac-sha256:/;

/** The entries of one audit log: one candidate per request id (its response when both are there). */
export async function readVaultAudit(path: string): Promise<{ candidates: Candidate[]; lines: number; malformed: number }> {
  const text = await readFile(path, 'utf8');
  const byRequest = new Map<string, Candidate>();
  let lines = 0;
  let malformed = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    lines += 1;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      malformed += 1;
      continue;
    }
    const c = parseVaultAuditEntry(entry);
    if (!c) {
      malformed += 1;
      continue;
    }
    const prev = byRequest.get(c.id);
    // A response repeats its request and adds what came back: it wins.
    if (!prev || (c as { entryType?: string }).entryType === 'response') byRequest.set(c.id, c);
  }
  return { candidates: [...byRequest.values()], lines, malformed };
}

export function parseVaultAuditEntry(raw: unknown): (Candidate & { readonly entryType: 'request' | 'response' }) | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const e = raw as Record<string, unknown>;
  const type = e.type;
  if (type !== 'request' && type !== 'response') return undefined;
  const req = (e.request ?? {}) as Record<string, unknown>;
  const auth = (e.auth ?? {}) as Record<string, unknown>;
  const res = (e.response ?? {}) as Record<string, unknown>;
  const id = cut(req.id);
  const at = Date.parse(cut(e.time));
  const operation = cut(req.operation);
  const path = cut(req.path);
  if (!id || !Number.isFinite(at) || !operation) return undefined;
  const keys: Array<{ kind: 'vault_lease' | 'vault_accessor'; id: string }> = [];
  const secret = (res.secret ?? {}) as Record<string, unknown>;
  const data = (req.data ?? {}) as Record<string, unknown>;
  // A hashed lease id cannot be matched to the one Leash recorded: only plain ones link.
  for (const lease of [cut(secret.lease_id), cut(data.lease_id)]) if (lease && !HASHED.test(lease)) keys.push({ kind: 'vault_lease', id: lease });
  const accessor = cut(auth.accessor) || cut(req.client_token_accessor);
  if (accessor) keys.push({ kind: 'vault_accessor', id: accessor });
  const minted = cut((res.auth as Record<string, unknown> | undefined)?.accessor);
  return {
    entryType: type,
    source: 'vault',
    id: `vault:${id}`,
    at,
    action: `${operation} ${path}`,
    target: path,
    outcome: typeof e.error === 'string' && e.error.length > 0 ? 'failure' : 'success',
    principal: cut(auth.display_name) || cut(auth.entity_id),
    sourceAddress: cut(req.remote_address),
    keys,
    ...(minted ? { provides: { kind: 'vault_accessor' as const, id: minted } } : {}),
  };
}
