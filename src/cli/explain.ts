import { readFile } from 'node:fs/promises';
import { UsageError, type CliIo, type Invocation } from './command-spec.js';
import { loadConfigFile, readGuardrailsFile, type LoadedConfig } from '../config/load.js';
import { ConfigError } from '../config/config-error.js';
import type { EventExplanation, Explanation } from '../exchange/explain.js';

/**
 * `leash explain`: what a running broker's exchange would decide for a request, step by
 * step, and what would make it pass (`POST /admin/explain`, role security); nothing is
 * issued. `--event SEQ` replays an exchange of the audit log. The admin credential comes
 * from `LEASH_ADMIN_KEY` or `--key-file`, and an attestation token from a file or stdin:
 * never from the command line, where `ps` shows it. Its options are declared in the
 * command tree (program.ts); this module reads them and talks to the broker.
 */

/** The command's io, and stdin for `--token -` (tests pass their own). */
export interface ExplainCliIo extends CliIo {
  readonly stdin?: () => Promise<string>;
}

async function processStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The options that describe a request (everything --event replaces). */
const REQUEST_OPTIONS = ['audience', 'token', 'token-type', 'claims', 'client', 'scope', 'task', 'task-attributes', 'ttl', 'request', 'dpop-file'];

/** `leash explain ...` as one call (tests, scripts): the same parser and exit codes as the command line. */
export async function runExplainCli(argv: readonly string[], io: ExplainCliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env }): Promise<number> {
  const { runCli } = await import('./program.js');
  return (await runCli(['explain', ...argv], io)) ?? 0;
}

export async function explainCommand(inv: Invocation, io: ExplainCliIo): Promise<number> {
  const format = inv.string('format') ?? 'text';
  const url = (inv.string('url') as string).replace(/\/+$/, '');
  if (!/^https?:\/\/[^?#\s]+$/.test(url)) throw new UsageError('give the broker URL with --url <http(s)://...> or LEASH_URL');
  const body = await requestBody(inv, io);
  const key = await adminKey(inv.string('key-file'), io.env);
  let res: Response;
  try {
    res = await (io.fetch ?? fetch)(`${url}/admin/explain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    io.err(`leash explain: cannot reach ${url}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    io.err(`leash explain: ${res.status} ${text.slice(0, 300)}\n`);
    return 1;
  }
  if (!res.ok) {
    io.err(`leash explain: ${res.status} ${String(answer.error)}: ${String(answer.error_description)}\n`);
    return 1;
  }
  io.out(format === 'json' ? `${JSON.stringify(answer, null, 2)}\n` : render(answer as unknown as Explanation | EventExplanation));
  return 0;
}

async function readOrUsage(file: string, what: string): Promise<string> {
  return readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${what}: ${e.code ?? e.message}`);
  });
}

/** The JSON a `--claims` / `--request` / `--task-attributes` value holds: inline, or `@file`. */
async function jsonValue(inv: Invocation, name: string): Promise<Record<string, unknown> | undefined> {
  const v = inv.string(name);
  if (v === undefined) return undefined;
  const text = v.startsWith('@') ? await readOrUsage(v.slice(1), `--${name} file`) : v;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`--${name} is not JSON`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--${name} must be a JSON object`);
  return parsed as Record<string, unknown>;
}

async function requestBody(inv: Invocation, io: ExplainCliIo): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  const policyFile = inv.string('policy');
  if (policyFile !== undefined) body.policy = await readOrUsage(policyFile, '--policy');
  const event = inv.string('event');
  if (event !== undefined) {
    if (!/^[1-9][0-9]{0,15}$/.test(event)) throw new UsageError('--event must be an audit event seq (a positive integer)');
    const others = REQUEST_OPTIONS.filter((f) => inv.given(f));
    if (others.length > 0) throw new UsageError(`--event replays the recorded request: drop ${others.map((f) => `--${f}`).join(', ')}`);
    body.event = Number(event);
    return body;
  }
  const audience = inv.string('audience');
  if (audience === undefined) throw new UsageError('give --audience (or --event)');
  const claims = await jsonValue(inv, 'claims');
  const tokenFile = inv.string('token');
  if ((claims === undefined) === (tokenFile === undefined)) throw new UsageError('give exactly one of --token <file|-> (a real attestation) and --claims <json> (its identity, stated)');
  const request: Record<string, unknown> = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', resource: audience };
  if (tokenFile !== undefined) {
    const token = (tokenFile === '-' ? await (io.stdin ?? processStdin)() : await readOrUsage(tokenFile, '--token')).trim();
    if (!token) throw new UsageError('--token is empty');
    request.subject_token = token;
    request.subject_token_type = inv.string('token-type') ?? 'urn:ietf:params:oauth:token-type:jwt';
  }
  if (claims !== undefined) body.claims = claims;
  for (const [name, param] of [
    ['client', 'client_id'],
    ['scope', 'scope'],
    ['task', 'task'],
    ['ttl', 'expires_in'],
  ] as const) {
    const v = inv.string(name);
    if (v !== undefined) request[param] = v;
  }
  const attributes = await jsonValue(inv, 'task-attributes');
  if (attributes !== undefined) {
    if (inv.given('task')) throw new UsageError('give --task (a task of the store) or --task-attributes (a task stated), not both');
    body.task = { attributes };
  }
  Object.assign(request, await jsonValue(inv, 'request'));
  body.request = request;
  const dpopFile = inv.string('dpop-file');
  if (dpopFile !== undefined) body.dpop = (await readOrUsage(dpopFile, '--dpop-file')).trim();
  return body;
}

async function adminKey(keyFile: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (keyFile !== undefined) {
    const key = (await readOrUsage(keyFile, '--key-file')).trim();
    if (!key) throw new UsageError('--key-file is empty');
    return key;
  }
  const key = env.LEASH_ADMIN_KEY?.trim();
  if (!key) throw new UsageError('no admin credential: set LEASH_ADMIN_KEY or pass --key-file <path>');
  return key;
}

const MARK: Readonly<Record<string, string>> = { passed: '+', failed: 'x', not_reached: '.', not_run: '-' };

/** The explanation as a terminal page: decision first, then every step, the grant, conditions, what would pass. */
export function render(answer: Explanation | EventExplanation): string {
  const lines: string[] = [];
  let e: Explanation;
  if ('replayed' in answer) {
    const ev = answer.event;
    lines.push(`event ${ev.seq} (${ev.type}) recorded ${ev.reason}`);
    if (!answer.replayed || !answer.explanation) {
      lines.push('not replayed: the refusal came before the workload was known, or went through a delegation or a person; the event does not hold what it would take');
      return `${lines.join('\n')}\n`;
    }
    lines.push(`replayed: ${answer.same_reason ? 'the same reason' : 'a DIFFERENT reason'}`, `not recorded (the replay stands without): ${answer.not_recorded.join('; ')}`, '');
    e = answer.explanation;
  } else e = answer;
  lines.push(`decision: ${e.decision} (${e.reason})${e.error ? ` -> ${e.error.status} ${e.error.error}` : ''}`);
  lines.push(`attestation: ${e.attestation === 'claims' ? 'claims (stated, not verified)' : 'token (verified)'}`);
  lines.push(`policy: ${e.policy.source}${e.policy.digest ? ` sha256:${e.policy.digest}` : ''}`);
  if (e.plugin) lines.push(`plugin: ${e.plugin}`);
  if (e.workload) lines.push(`workload: ${e.workload.issuer} ${e.workload.subject}`);
  lines.push('', 'steps:');
  for (const s of e.steps) {
    const what = s.outcome === 'failed' ? `${s.code ?? ''}: ${s.detail ?? ''}` : s.outcome === 'passed' ? (s.detail ?? '') : s.outcome.replace('_', ' ');
    lines.push(`  ${MARK[s.outcome] ?? '?'} ${s.step.padEnd(18)} ${what}`);
  }
  const g = e.grant;
  if (g) lines.push('', `grant ${g.index}: ${g.audience} scopes ${g.scopes.join(' ')}; ${g.kind}, effect ${g.effect}, max_ttl ${g.max_ttl}s, approval ${g.approval}`);
  if (e.conditions) {
    lines.push('conditions:');
    for (const c of e.conditions) lines.push(`  ${c.holds ? '+' : 'x'} ${c.condition}`);
  }
  const w = e.would_issue;
  if (w) lines.push('', `would issue: ${w.kind}, scopes ${w.scopes.join(' ')}, ttl ${w.ttl ?? '?'}s${w.approval ? `, after a human approves (${w.approval})` : ''}`);
  if (e.fix.length > 0) {
    lines.push('', 'to pass:');
    for (const f of e.fix) lines.push(`  - ${f}`);
  }
  lines.push('', 'nothing was issued');
  return `${lines.join('\n')}\n`;
}

/** `serve --candidate FILE`: the candidate config through the same loader (and guardrails) as the live one. */
export async function loadCandidate(
  file: string | undefined,
  guardrailsFile: string | undefined,
  err: (s: string) => void = (s) => process.stderr.write(s),
): Promise<LoadedConfig | undefined | 'invalid'> {
  if (file === undefined) return undefined;
  try {
    return await loadConfigFile(file, { guardrails: guardrailsFile === undefined ? undefined : readGuardrailsFile(guardrailsFile) });
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`candidate ${file}: ${e.message}\n`);
      return 'invalid';
    }
    throw e;
  }
}
