import { readFile, writeFile } from 'node:fs/promises';
import { UsageError, type CliIo, type Invocation } from './command-spec.js';

/**
 * `leash task show <id>`: a task's timeline from a running broker (`GET
 * /admin/tasks/{id}/timeline`), as text, JSON or the HTML page. The admin credential
 * comes from `LEASH_ADMIN_KEY` or `--key-file`, never from the command line.
 */

export interface TaskCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

/** `leash task <verb> ...` as one call (tests, scripts): the same parser and exit codes as the command line. */
export async function runTaskCli(argv: readonly string[], io: TaskCliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env }): Promise<number> {
  const { runCli } = await import('./program.js');
  return (await runCli(['task', ...argv], io)) ?? 0;
}

export async function taskShowCommand(inv: Invocation, io: CliIo): Promise<number> {
  const id = inv.args[0] as string;
  const format = inv.string('format') ?? 'text';
  const url = (inv.string('url') as string).replace(/\/+$/, '');
  if (!/^https?:\/\/[^?#\s]+$/.test(url)) throw new UsageError('give the broker URL with --url <http(s)://...> or LEASH_URL');
  const key = await adminKey(inv.string('key-file'), io.env);
  let res: Response;
  try {
    res = await (io.fetch ?? fetch)(`${url}/admin/tasks/${encodeURIComponent(id)}/timeline?format=${format}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    io.err(`leash task: cannot reach ${url}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  if (!res.ok) {
    let why = text.slice(0, 300);
    try {
      const body = JSON.parse(text) as { error?: unknown; error_description?: unknown };
      why = `${String(body.error)}: ${String(body.error_description)}`;
    } catch {
      // not JSON: shown as it came
    }
    io.err(`leash task show: ${res.status} ${why}\n`);
    return 1;
  }
  const out = format === 'json' ? `${JSON.stringify(JSON.parse(text), null, 2)}\n` : text;
  const file = inv.string('out');
  if (file !== undefined) {
    await writeFile(file, out, { mode: 0o600 });
    io.out(`wrote ${file}\n`);
  } else io.out(out);
  return 0;
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
