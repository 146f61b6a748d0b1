import { readFile } from 'node:fs/promises';
import { UsageError, type CliIo, type Invocation } from './command-spec.js';

/**
 * `leash keys ...`: the signing-key admin API of a running broker from a shell. The admin
 * credential comes from `LEASH_ADMIN_KEY` or `--key-file`, never from the command line
 * (it would land in shell history and `ps`).
 */

interface KeyRow {
  kid: string;
  alg: string;
  state: string;
  backend: string;
  created_at: string | null;
  activated_at: string | null;
  retired_at: string | null;
  remove_at: string | null;
  signs_from: string | null;
  age_seconds: number;
}

interface Transition {
  action: string;
  kid: string;
  from: string | null;
  to: string;
}

export interface KeysCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const shortTime = (iso: string | null) => (iso === null ? '-' : iso.replace(/\.\d{3}Z$/, 'Z'));

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** A plain aligned table: operators read it, scripts use --json. */
export function keysTable(keys: readonly KeyRow[]): string {
  const head = ['KID', 'STATE', 'ALG', 'AGE', 'CREATED', 'SIGNS FROM', 'ACTIVATED', 'RETIRED', 'REMOVE AT'];
  const order: Record<string, number> = { next: 0, current: 1, retired: 2 };
  const rows = [...keys]
    .sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || (a.created_at ?? '').localeCompare(b.created_at ?? ''))
    .map((k) => [k.kid, k.state, k.alg, age(k.age_seconds), shortTime(k.created_at), shortTime(k.signs_from), shortTime(k.activated_at), shortTime(k.retired_at), shortTime(k.remove_at)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  return (
    [head, ...rows]
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i] as number))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

async function adminKey(keyFile: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (keyFile !== undefined) {
    const key = (
      await readFile(keyFile, 'utf8').catch((e: Error) => {
        throw new UsageError(`cannot read --key-file: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
      })
    ).trim();
    if (!key) throw new UsageError('--key-file is empty');
    return key;
  }
  const key = env.LEASH_ADMIN_KEY?.trim();
  if (!key) throw new UsageError('no admin credential: set LEASH_ADMIN_KEY or pass --key-file <path>');
  return key;
}

/** `leash keys <verb> ...` as one call (tests, scripts): the same parser and exit codes as the command line. */
export async function runKeysCli(argv: readonly string[], io: KeysCliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env }): Promise<number> {
  const { runCli } = await import('./program.js');
  return (await runCli(['keys', ...argv], io)) ?? 0;
}

/** `leash keys list|rotate|retire|revoke`: the arguments are parsed and checked by the command tree (program.ts). */
export async function keysCommand(inv: Invocation, io: CliIo): Promise<number> {
  const verb = inv.path[1] as 'list' | 'rotate' | 'retire' | 'revoke';
  const kid = inv.args[0];
  const json = inv.has('json');
  const url = (inv.string('url') as string).replace(/\/+$/, '');
  if (!/^https?:\/\/[^?#\s]+$/.test(url)) throw new UsageError('give the broker URL with --url <http(s)://...> or LEASH_URL');
  const key = await adminKey(inv.string('key-file'), io.env);

  const body: Record<string, unknown> = {};
  const reason = verb === 'list' ? undefined : inv.string('reason');
  if (reason !== undefined) body.reason = reason;
  if (verb === 'rotate' && inv.has('force')) body.force = true;
  const path = verb === 'list' ? '/admin/keys' : verb === 'rotate' ? '/admin/keys/rotate' : `/admin/keys/${encodeURIComponent(kid as string)}/${verb}`;
  let res: Response;
  try {
    res = await (io.fetch ?? fetch)(`${url}${path}`, {
      method: verb === 'list' ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, accept: 'application/json', ...(verb === 'list' ? {} : { 'content-type': 'application/json' }) },
      body: verb === 'list' ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    io.err(`leash keys: cannot reach ${url}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(text) as Record<string, unknown>;
  } catch {
    io.err(`leash keys: ${url} answered ${res.status} with a body that is not JSON (is --url a Leash broker?)\n`);
    return 1;
  }
  if (!res.ok) {
    if (json) io.out(`${JSON.stringify(payload, null, 2)}\n`);
    const rule = typeof payload.conflict === 'string' ? ` (${payload.conflict})` : '';
    io.err(`leash keys ${verb}: ${res.status} ${String(payload.error)}${rule}: ${String(payload.error_description)}\n`);
    return 1;
  }
  if (json) {
    io.out(`${JSON.stringify(payload, null, 2)}\n`);
    return 0;
  }
  for (const t of (payload.transitions as Transition[] | undefined) ?? []) io.out(`${t.action.padEnd(8)} ${t.kid}  ${t.from ?? '(new)'} -> ${t.to}\n`);
  if (payload.revocation) io.out(`tokens signed by ${kid} are revoked (revocation seq ${String((payload.revocation as { seq: unknown }).seq)})\n`);
  if (payload.transitions) io.out('\n');
  io.out(keysTable(payload.keys as KeyRow[]));
  return 0;
}
