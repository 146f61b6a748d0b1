import { readFile, writeFile } from 'node:fs/promises';
import { flag, parseArgs } from './args.js';

/**
 * `leash task show <id>`: a task's timeline from a running broker (`GET
 * /admin/tasks/{id}/timeline`), as text, JSON or the HTML page. The admin credential
 * comes from `LEASH_ADMIN_KEY` or `--key-file`, never from the command line.
 */

export const TASK_USAGE = `usage: leash task show <task id> --url <leash url> [--key-file <path>] [--format text|json|html] [--out <file>]

  show <id>    every exchange, approval, delegation hop, use, downstream event, revocation and
               anomaly of the task, in order (role security, or the orchestrator that opened it)

  --format     text (default), json, or html (a page with one swim lane per plugin)
  --out        write to a file instead of stdout (handy for html)
  The admin API key is read from $LEASH_ADMIN_KEY or from --key-file; --url defaults to $LEASH_URL.
  Exit status: 0 done, 1 refused or failed by the broker, 2 usage error.
`;

class TaskUsageError extends Error {}

export interface TaskCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

export async function runTaskCli(argv: readonly string[], io: TaskCliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env }): Promise<number> {
  try {
    let args;
    try {
      args = parseArgs(argv, ['url', 'key-file', 'format', 'out']);
    } catch (e) {
      throw new TaskUsageError((e as Error).message);
    }
    const [verb, id, ...extra] = args.positional;
    if (verb === undefined || verb === 'help') {
      io.out(TASK_USAGE);
      return verb === undefined ? 2 : 0;
    }
    if (verb !== 'show') throw new TaskUsageError(`unknown verb '${verb}'`);
    if (!id) throw new TaskUsageError('leash task show needs a <task id>');
    if (extra.length > 0) throw new TaskUsageError('too many arguments');
    const format = flag(args, 'format') ?? 'text';
    if (!['text', 'json', 'html'].includes(format)) throw new TaskUsageError('--format must be text, json or html');
    const url = (flag(args, 'url') ?? io.env.LEASH_URL)?.replace(/\/+$/, '');
    if (!url || !/^https?:\/\/[^?#\s]+$/.test(url)) throw new TaskUsageError('give the broker URL with --url <http(s)://...> or LEASH_URL');
    const key = await adminKey(flag(args, 'key-file'), io.env);
    let res: Response;
    try {
      res = await fetch(`${url}/admin/tasks/${encodeURIComponent(id)}/timeline?format=${format}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(30_000) });
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
    const file = flag(args, 'out');
    if (file !== undefined) {
      await writeFile(file, out, { mode: 0o600 });
      io.out(`wrote ${file}\n`);
    } else io.out(out);
    return 0;
  } catch (e) {
    if (e instanceof TaskUsageError) {
      io.err(`leash task: ${e.message}\n${TASK_USAGE}`);
      return 2;
    }
    throw e;
  }
}

async function adminKey(keyFile: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (keyFile !== undefined) {
    const key = (
      await readFile(keyFile, 'utf8').catch((e: Error) => {
        throw new TaskUsageError(`cannot read --key-file: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
      })
    ).trim();
    if (!key) throw new TaskUsageError('--key-file is empty');
    return key;
  }
  const key = env.LEASH_ADMIN_KEY?.trim();
  if (!key) throw new TaskUsageError('no admin credential: set LEASH_ADMIN_KEY or pass --key-file <path>');
  return key;
}
