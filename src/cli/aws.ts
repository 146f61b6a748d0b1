import { readFile } from 'node:fs/promises';
import { discoverTokenEndpoint, isHttpUrl, readJson } from '../client/discovery.js';
import { LeashExchangeError } from '../client/errors.js';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_AWS_CREDENTIALS, TOKEN_TYPE_JWT } from '../formats/token-types.js';
import { parseCommandLine, processIo, UsageError, type CliIo, type Invocation } from './command-spec.js';
import { LEASH, runCli } from './program.js';

export { UsageError } from './command-spec.js';

/**
 * `leash aws ...`: lets any AWS tool (CLI, every SDK) get its credentials from Leash with
 * one `credential_process` line in `~/.aws/config`. The AWS side runs the command, reads
 * stdout as JSON and nothing else, so stdout carries exactly that JSON and every problem
 * goes to stderr with a non-zero exit.
 */

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

/**
 * Reads `credential-process` flags through the command tree (program.ts), then what the tree
 * cannot say: one task form, an http(s) issuer. `--scope` may repeat and each value may
 * hold several space-separated scopes (the OAuth `scope` syntax).
 */
export function parseCredentialProcessArgs(argv: readonly string[]): CredentialProcessOptions {
  const parsed = parseCommandLine(LEASH, ['aws', 'credential-process', ...argv], {});
  if (parsed.kind === 'usage') throw new UsageError(parsed.message);
  if (parsed.kind !== 'run') throw new UsageError('--help is not a credential request');
  return credentialProcessOptions(parsed.inv);
}

function credentialProcessOptions(inv: Invocation): CredentialProcessOptions {
  const issuer = inv.string('issuer') as string;
  if (!/^https?:\/\/[^?#\s]+$/.test(issuer)) throw new UsageError('--issuer must be the http(s) URL of Leash');
  const task = inv.string('task');
  const taskFile = inv.string('task-file');
  if ((task === undefined) === (taskFile === undefined)) throw new UsageError('give exactly one of --task and --task-file');
  const scopes = [
    ...new Set(
      inv
        .strings('scope')
        .flatMap((s) => s.split(' '))
        .filter((s) => s !== ''),
    ),
  ];
  return {
    issuer: issuer.replace(/\/+$/, ''),
    clientId: inv.string('client-id') as string,
    audience: inv.string('audience') as string,
    task: task !== undefined ? { id: task } : { file: taskFile as string },
    attestationFile: inv.string('attestation-file') as string,
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

export interface AwsCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  readonly fetch?: typeof fetch;
}

/** `leash aws <verb> ...` as one call (tests, scripts): the same parser and exit codes as the command line. */
export async function runAwsCli(argv: readonly string[], io: AwsCliIo = processIo): Promise<number> {
  return (await runCli(['aws', ...argv], { env: process.env, ...io })) ?? 0;
}

/**
 * `leash aws credential-process`: exit 2 for usage mistakes and unreadable files, 1 for a
 * refused or failed exchange (the OAuth error and its description on stderr; the
 * attestation never appears anywhere).
 */
export async function credentialProcessCommand(inv: Invocation, io: CliIo): Promise<number> {
  const opts = credentialProcessOptions(inv);
  try {
    const creds = await fetchAwsCredentials(opts, io.fetch);
    io.out(`${JSON.stringify(creds)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof LeashExchangeError) {
      io.err(`leash aws credential-process: ${e.error}${e.error_description ? `: ${e.error_description}` : ''}\n`);
      return 1;
    }
    throw e;
  }
}
