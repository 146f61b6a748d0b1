import { readFile } from 'node:fs/promises';
import { discoverTokenEndpoint, isHttpUrl, readJson } from '../client/discovery.js';
import { LeashExchangeError } from '../client/errors.js';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_AWS_CREDENTIALS, TOKEN_TYPE_JWT } from '../formats/token-types.js';

/**
 * `leash aws ...`: lets any AWS tool (CLI, every SDK) get its credentials from Leash with
 * one `credential_process` line in `~/.aws/config`. The AWS side runs the command, reads
 * stdout as JSON and nothing else, so stdout carries exactly that JSON and every problem
 * goes to stderr with a non-zero exit.
 */

const USAGE = `usage: leash aws credential-process --issuer <leash url> --client-id <plugin> --audience <grant audience>
         (--task <id> | --task-file <path>) --attestation-file <path> [--scope <scope> ...]

  Prints the AWS credential_process JSON (Version 1) for the plugin's aws-sts grant. Use it as
    credential_process = leash aws credential-process --issuer ... --client-id ... ...
  in ~/.aws/config. The attestation (e.g. a Kubernetes projected service-account token) and
  the task id file are read on every run, so rotated tokens and new tasks are picked up.
`;

export interface CredentialProcessOptions {
  /** Leash base URL (its issuer). */
  readonly issuer: string;
  readonly clientId: string;
  /** The aws-sts grant's audience: sent as `resource` when it is an http(s) URL, else as `audience`. */
  readonly audience: string;
  readonly task: { readonly id: string } | { readonly file: string };
  readonly attestationFile: string;
  readonly scopes: readonly string[];
}

/** AWS `credential_process` output, Version 1. */
export interface CredentialProcessOutput {
  readonly Version: 1;
  readonly AccessKeyId: string;
  readonly SecretAccessKey: string;
  readonly SessionToken: string;
  readonly Expiration: string;
}

/** A usage mistake on the command line (exit 2), as opposed to a refused exchange (exit 1). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const VALUE_FLAGS = ['issuer', 'client-id', 'audience', 'task', 'task-file', 'attestation-file', 'scope'] as const;

/**
 * Parses `credential-process` flags. `--scope` may repeat and each value may hold several
 * space-separated scopes (the OAuth `scope` syntax).
 */
export function parseCredentialProcessArgs(argv: readonly string[]): CredentialProcessOptions {
  const values = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (!(VALUE_FLAGS as readonly string[]).includes(name)) throw new UsageError(`unknown option --${name}`);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') throw new UsageError(`--${name} needs a value`);
    values.set(name, [...(values.get(name) ?? []), value]);
  }
  const missing = ['issuer', 'client-id', 'audience', 'attestation-file'].filter((f) => !values.has(f));
  if (missing.length > 0) throw new UsageError(`missing ${missing.map((f) => `--${f}`).join(', ')}`);
  const one = (name: string): string | undefined => {
    const list = values.get(name);
    if (list && list.length > 1) throw new UsageError(`--${name} given more than once`);
    return list?.[0];
  };
  const issuer = one('issuer') as string;
  if (!/^https?:\/\/[^?#\s]+$/.test(issuer)) throw new UsageError('--issuer must be the http(s) URL of Leash');
  const task = one('task');
  const taskFile = one('task-file');
  if ((task === undefined) === (taskFile === undefined)) throw new UsageError('give exactly one of --task and --task-file');
  const scopes = [...new Set((values.get('scope') ?? []).flatMap((s) => s.split(' ')).filter((s) => s !== ''))];
  return {
    issuer: issuer.replace(/\/+$/, ''),
    clientId: one('client-id') as string,
    audience: one('audience') as string,
    task: task !== undefined ? { id: task } : { file: taskFile as string },
    attestationFile: one('attestation-file') as string,
    scopes,
  };
}

/** Reads a one-line file (attestation, task id); a missing or empty file says which flag to fix. */
async function readOneValue(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new UsageError(`cannot read the ${what} file '${path}' (${code})`);
  }
  const value = text.trim();
  if (value === '') throw new UsageError(`the ${what} file '${path}' is empty`);
  return value;
}

/**
 * Performs the RFC 8693 exchange for AWS credentials: discovery, then `POST` to the token
 * endpoint with the attestation as `subject_token` and `requested_token_type` = the Leash
 * AWS credentials URN. Throws LeashExchangeError (the server's OAuth error) or UsageError.
 */
export async function fetchAwsCredentials(opts: CredentialProcessOptions, fetchFn: typeof fetch = globalThis.fetch): Promise<CredentialProcessOutput> {
  const attestation = await readOneValue(opts.attestationFile, 'attestation');
  const task = 'id' in opts.task ? opts.task.id : await readOneValue(opts.task.file, 'task id');
  const endpoint = await discoverTokenEndpoint(opts.issuer, fetchFn);

  const form = new URLSearchParams({
    grant_type: TOKEN_EXCHANGE_GRANT,
    client_id: opts.clientId,
    subject_token: attestation,
    subject_token_type: TOKEN_TYPE_JWT,
    requested_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
  });
  // Same rule as the plugin SDK: an http(s) URL is an RFC 8707 resource, anything else an audience.
  form.set(isHttpUrl(opts.audience) ? 'resource' : 'audience', opts.audience);
  if (opts.scopes.length > 0) form.set('scope', opts.scopes.join(' '));
  form.set('task', task);

  let res: Response;
  try {
    res = await fetchFn(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
    });
  } catch (err) {
    throw new LeashExchangeError('network_error', `could not reach the token endpoint ${endpoint}`, 0, { cause: err });
  }
  const body = await readJson(res);
  if (!res.ok) {
    if (typeof body?.error === 'string') {
      throw new LeashExchangeError(body.error, typeof body.error_description === 'string' ? body.error_description : undefined, res.status);
    }
    throw new LeashExchangeError('invalid_response', `the token endpoint answered HTTP ${res.status} without an OAuth error`, res.status);
  }
  return toCredentialProcess(body, res.status);
}

/** Checks the documented aws-sts answer and reshapes it for the AWS tools. */
export function toCredentialProcess(body: Record<string, unknown> | undefined, status = 200): CredentialProcessOutput {
  const invalid = (why: string) => new LeashExchangeError('invalid_response', why, status);
  if (body?.issued_token_type !== TOKEN_TYPE_AWS_CREDENTIALS) {
    throw invalid(`the token endpoint issued ${String(body?.issued_token_type)}, not AWS credentials: is the grant for this audience of kind aws-sts?`);
  }
  const c = body.aws_credentials as Record<string, unknown> | undefined;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const accessKeyId = str(c?.access_key_id);
  const secretAccessKey = str(c?.secret_access_key);
  const sessionToken = str(c?.session_token);
  const expiration = str(c?.expiration);
  if (!accessKeyId || !secretAccessKey || !sessionToken || !expiration) {
    throw invalid('the answer lacks aws_credentials.access_key_id, secret_access_key, session_token or expiration');
  }
  const when = Date.parse(expiration);
  if (Number.isNaN(when)) throw invalid('aws_credentials.expiration is not an ISO 8601 date');
  // Normalised to ISO 8601 UTC, which every AWS SDK parses.
  return { Version: 1, AccessKeyId: accessKeyId, SecretAccessKey: secretAccessKey, SessionToken: sessionToken, Expiration: new Date(when).toISOString() };
}

export interface CliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly fetch?: typeof fetch;
}

const processIo: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/**
 * `leash aws <subcommand>`: returns the exit code. Exit 2 for usage mistakes, 1 for a
 * refused or failed exchange (the OAuth error and its description on stderr; the
 * attestation never appears anywhere).
 */
export async function runAwsCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help') {
    io.out(USAGE);
    return 0;
  }
  if (sub !== 'credential-process') {
    io.err(`unknown aws command '${sub}'\n${USAGE}`);
    return 2;
  }
  let opts: CredentialProcessOptions;
  try {
    opts = parseCredentialProcessArgs(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`leash aws credential-process: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  try {
    const creds = await fetchAwsCredentials(opts, io.fetch);
    io.out(`${JSON.stringify(creds)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof LeashExchangeError) {
      io.err(`leash aws credential-process: ${e.error}${e.error_description ? `: ${e.error_description}` : ''}\n`);
      return 1;
    }
    if (e instanceof UsageError) {
      io.err(`leash aws credential-process: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
