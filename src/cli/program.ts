import { formatHelp, formatUsageError, parseCommandLine, processIo, UsageError, type CliIo, type CommandSpec, type OptionSpec } from './command-spec.js';

/**
 * Every `leash` command, in the order `leash --help` lists them. A command is one entry:
 * its words, arguments, options and a `run` that imports its module only when it runs
 * (`leash --version` loads none of the broker). Help, completion, docs/cli.md and the
 * exit code table test are derived from this tree.
 */

const config = (summary = 'the config file'): OptionSpec => ({ name: 'config', value: 'file', summary, env: 'LEASH_CONFIG', required: true });
const guardrails: OptionSpec = { name: 'guardrails', value: 'file', summary: "platform security's guardrails baseline (docs/configuration.md)" };
const url: OptionSpec = { name: 'url', value: 'url', summary: "the running broker's URL", env: 'LEASH_URL', required: true, complete: 'none' };
const keyFile: OptionSpec = { name: 'key-file', value: 'path', summary: 'a file holding the admin API key (else $LEASH_ADMIN_KEY; never the key itself on the command line)' };
const port: OptionSpec = {
  name: 'port',
  value: 'n',
  summary: "the public port (0: any free port), instead of the config's settings.listen.port",
  complete: 'none',
};
const managementPort: OptionSpec = { name: 'management-port', value: 'n', summary: 'the port for /healthz, /readyz and /metrics, instead of settings.management.port', complete: 'none' };
const adminApi = 'The admin API key is read from $LEASH_ADMIN_KEY or from --key-file, never from the command line (it would land in shell history and ps).';
const brokerExit = '0 done, 1 refused or failed by the broker, 2 usage error';

const keysVerb = (name: string, summary: string, extra: Partial<CommandSpec> & { options?: OptionSpec[] } = {}): CommandSpec => ({
  name,
  summary,
  description: `${summary.charAt(0).toUpperCase()}${summary.slice(1)}. ${adminApi}`,
  exit: brokerExit,
  ...extra,
  options: [url, keyFile, ...(extra.options ?? []), { name: 'json', summary: "print the broker's JSON answer" }],
  run: async (inv, io) => (await import('./keys.js')).keysCommand(inv, io),
});

export const LEASH: CommandSpec = {
  name: 'leash',
  summary: 'ephemeral credential broker for AI plugins',
  description: 'Leash: ephemeral credentials for AI plugins and agent tools (RFC 8693 token exchange from workload attestation).',
  commands: [
    {
      name: 'serve',
      summary: 'run the broker',
      description:
        'Run the broker on a config (--config or $LEASH_CONFIG). Reloads the policy on SIGHUP or a file change; drains on SIGTERM/SIGINT (settings.shutdown_grace). ' +
        "--port overrides the config's settings.listen.port; when the config's issuer URL names the listen port, a --port that differs from it is warned about (clients are told the issuer's port). " +
        'With --workers N (or settings.workers) above 1, a primary process forks N workers that share the ports; it restarts a worker that dies and forwards SIGTERM, SIGINT and SIGHUP to them (docs/operations.md).',
      options: [
        { ...config(), required: false },
        guardrails,
        port,
        managementPort,
        { name: 'demo', summary: 'serve the demo policy config/demo.yaml (public admin keys: a laptop only)' },
        { name: 'demo-if-no-config', summary: 'npm start: the demo policy when no config is given', hidden: true },
        {
          name: 'workers',
          value: 'n',
          env: 'LEASH_WORKERS',
          summary: 'worker processes sharing the ports (node:cluster), or auto: one per core; instead of settings.workers (1: one process, no primary)',
          complete: 'none',
        },
        {
          name: 'candidate',
          value: 'file',
          summary: "also decide every exchange with this config's policy (loaded as --config is), enforce the live one, record policy.candidate_diff where they differ (a shadow rollout)",
        },
      ],
      exit: '0 stopped after a signal, 1 could not start (config, port, store, keys), 2 usage error',
      run: async (inv, io) => (await import('./commands.js')).serve(inv, io),
    },
    {
      name: 'validate',
      summary: 'check a config, its policy, guardrails and exceptions without starting anything',
      args: [{ name: 'file', summary: 'the config file', complete: 'file' }],
      options: [guardrails],
      exit: '0 valid, 1 a problem (each printed with its path), 2 usage error',
      run: async (inv, io) => (await import('./commands.js')).validate(inv, io),
    },
    {
      name: 'review',
      summary: 'governance review: findings mapped to OWASP NHI, OWASP Agentic and CSA MAESTRO',
      description: 'Governance review of a policy, with evidence of use from a store (docs/review.md). With --base, only what the change introduces or resolves.',
      options: [
        config('the policy to review'),
        guardrails,
        { name: 'store', value: 'config|path|url', summary: "evidence of use: config (the policy's store), a SQLite file or a redis:// URL" },
        { name: 'since', value: 'days', summary: 'days of history, like 30d (default: settings.review.window_days)', complete: 'none' },
        { name: 'format', value: 'format', summary: 'output format (default: text)', choices: ['text', 'json', 'sarif', 'markdown', 'html'] },
        { name: 'fail-on', value: 'severity', summary: 'exit 1 on a finding at or above this (default: high)', choices: ['critical', 'high', 'medium', 'low', 'none'] },
        { name: 'base', value: 'file', summary: 'the policy before the change (diff mode)' },
        { name: 'out', value: 'file', summary: 'write here instead of stdout' },
      ],
      exit: '0 nothing at or above --fail-on, 1 something is, 2 the policy or the arguments are unusable',
      run: async (inv, io) => (await import('./review.js')).reviewCommand(inv, io),
    },
    {
      name: 'audit',
      summary: 'the audit chain',
      commands: [
        {
          name: 'verify',
          summary: 'verify the audit chain in the configured store',
          description:
            'Verify the audit chain in the configured store from its genesis, and against the newest signed checkpoint found with --checkpoint (a JWS, or audit JSON lines; - reads stdin). Without a checkpoint, records cut off the end of the chain would not show.',
          options: [
            config(),
            { name: 'checkpoint', value: 'jws|file|-', summary: 'a signed checkpoint: a compact JWS, a file of audit lines, or - for stdin' },
            { name: 'jwks', value: 'file|url', summary: "the JWKS to verify it with (default: the issuer's /jwks)" },
          ],
          exit: '0 intact, 1 broken (or a checkpoint fails its signature), 2 usage error or a given checkpoint could not be checked',
          run: async (inv, io) => (await import('./audit.js')).auditVerifyCommand(inv, io),
        },
      ],
    },
    {
      name: 'store',
      summary: "the store's identity, and accepting a reset",
      commands: [
        {
          name: 'status',
          summary: "the store's epoch, where its audit chain begins, any pending reset",
          options: [config()],
          exit: '0 no reset pending, 1 a reset is pending (or a failure), 2 usage error',
          run: async (inv, io) => (await import('./store.js')).storeCommand(inv, io),
        },
        {
          name: 'accept-reset',
          summary: 'accept that the store was reset (replicas refuse to serve until then)',
          options: [
            config(),
            { name: 'yes', summary: 'confirm: every replica serves again on what the store holds now' },
            { name: 'by', value: 'name', summary: 'who accepts (default: the user name)', complete: 'none' },
          ],
          exit: '0 accepted or nothing pending, 1 failure, 2 usage error or --yes missing',
          run: async (inv, io) => (await import('./store.js')).storeCommand(inv, io),
        },
      ],
    },
    {
      name: 'demo',
      summary: 'quickstart: the broker on the demo policy, and an exchange end to end',
      description:
        'Start Leash on embedded defaults with the demo policy and play an orchestrator, a plugin and a resource server against it; it keeps serving until Ctrl-C. ' +
        "--port moves the broker, and the demo's issuer URL follows it (http://127.0.0.1:<port>).",
      options: [port, managementPort, { name: 'no-serve', summary: 'stop after the walkthrough' }],
      commands: [
        {
          name: 'token',
          summary: 'print a demo Kubernetes service-account token for the demo cluster',
          options: [
            { name: 'sa', value: 'name', summary: 'the service account (default: crm-reader)', complete: 'none' },
            { name: 'namespace', value: 'name', summary: 'its namespace (default: plugins)', complete: 'none' },
            { name: 'config', value: 'file', summary: 'accepted and ignored', hidden: true },
          ],
          run: async (inv, io) => (await import('./demo.js')).demoTokenCommand(inv, io),
        },
      ],
      run: async (inv, io) => (await import('./demo.js')).runDemo(inv, io),
    },
    {
      name: 'aws',
      summary: 'AWS credentials from Leash for any AWS SDK or CLI (docs/aws.md)',
      commands: [
        {
          name: 'credential-process',
          summary: 'print AWS credentials in credential_process format',
          description:
            "Print the AWS credential_process JSON (Version 1) for the plugin's aws-sts grant. Use it as `credential_process = leash aws credential-process --issuer ... --client-id ... ...` in ~/.aws/config. " +
            'The attestation (e.g. a Kubernetes projected service-account token) and the task id file are read on every run, so rotated tokens and new tasks are picked up. Only the JSON goes to stdout.',
          options: [
            { name: 'issuer', value: 'leash url', summary: "Leash's URL (its issuer)", required: true, complete: 'none' },
            { name: 'client-id', value: 'plugin', summary: 'the plugin id', required: true, complete: 'none' },
            { name: 'audience', value: 'grant audience', summary: "the aws-sts grant's audience", required: true, complete: 'none' },
            { name: 'task', value: 'id', summary: 'the task id (or --task-file)', complete: 'none' },
            { name: 'task-file', value: 'path', summary: 'a file holding the task id, read on every run' },
            { name: 'attestation-file', value: 'path', summary: 'the attestation token file', required: true },
            { name: 'scope', value: 'scope', summary: 'scopes to ask for (space-separated)', multiple: true, complete: 'none' },
          ],
          exit: '0 credentials printed, 1 the exchange was refused or failed (the OAuth error on stderr), 2 usage error or an unreadable file',
          run: async (inv, io) => (await import('./aws.js')).credentialProcessCommand(inv, io),
        },
      ],
    },
    {
      name: 'keys',
      summary: 'signing keys of a running broker',
      description: `Signing keys of a running broker, through its admin API. ${adminApi}`,
      commands: [
        keysVerb('list', 'the signing keys, their states and times (role ops or security)'),
        keysVerb('rotate', 'next becomes current, current retires (role ops)', {
          options: [
            { name: 'reason', value: 'text', summary: 'why, for the audit trail', complete: 'none' },
            { name: 'force', summary: 'rotate even when the schedule says it is too early' },
          ],
        }),
        keysVerb('retire', 'stop signing with a key; it stays published until remove_at (role ops)', {
          args: [{ name: 'kid', summary: 'the key id (leash keys list)', complete: 'none' }],
          options: [{ name: 'reason', value: 'text', summary: 'why, for the audit trail', complete: 'none' }],
        }),
        keysVerb('revoke', 'emergency: withdraw the key now and revoke every token it signed (role security)', {
          args: [{ name: 'kid', summary: 'the key id (leash keys list)', complete: 'none' }],
          options: [
            {
              name: 'reason',
              value: 'text',
              summary: 'why, for the audit trail',
              required: true,
              complete: 'none',
              missing: 'needs --reason <text> (it goes into the audit trail)',
            },
          ],
        }),
      ],
    },
    {
      name: 'explain',
      summary: 'what the exchange would decide for a request, step by step, and what would pass; nothing is issued',
      description:
        "Ask a running broker (POST /admin/explain, role security) what its exchange would decide for a token request, under the running policy or --policy's: every step, the grant, each condition, what would make it pass. " +
        'Give --event to replay an exchange of the audit log, or --audience with exactly one of --token (a real attestation, a file or - for stdin; never on the command line) and --claims (its identity, stated and not verified). ' +
        adminApi,
      options: [
        url,
        keyFile,
        { name: 'format', value: 'format', summary: 'text (default) or json', choices: ['text', 'json'] },
        { name: 'policy', value: 'file', summary: "decide with this config file's policy instead of the running one (no ${VAR} is read, no file it names)" },
        { name: 'event', value: 'seq', summary: 'replay this audit event (an exchange): the same reason as recorded?', complete: 'none' },
        { name: 'audience', value: 'url', summary: 'the resource asked for', complete: 'none' },
        { name: 'token', value: 'file|-', summary: 'the attestation token (a file, or - for stdin); verified as an exchange verifies it' },
        { name: 'token-type', value: 'urn', summary: 'its subject_token_type (default: urn:ietf:params:oauth:token-type:jwt)', complete: 'none' },
        { name: 'claims', value: 'json|@file', summary: 'instead of a token, the identity it would give: {"issuer":"<trusted issuer name>","subject":"...","attributes":{...}}' },
        { name: 'client', value: 'id', summary: 'the client_id', complete: 'none' },
        { name: 'scope', value: 'scopes', summary: 'the scopes asked for (space-separated)', complete: 'none' },
        { name: 'task', value: 'id', summary: 'a task of the store', complete: 'none' },
        { name: 'task-attributes', value: 'json|@file', summary: 'a task stated by its attributes ({"env":"prod"}) instead of --task' },
        { name: 'ttl', value: 'seconds', summary: 'the expires_in asked for', complete: 'none' },
        { name: 'request', value: 'json|@file', summary: 'more token-request parameters (actor_token, requested_token_type, ...)' },
        { name: 'dpop-file', value: 'file', summary: 'a DPoP proof for the request (checked, not spent)' },
      ],
      exit: '0 answered (whatever the decision), 1 refused or failed by the broker, 2 usage error',
      run: async (inv, io) => (await import('./explain.js')).explainCommand(inv, io),
    },
    {
      name: 'task',
      summary: 'tasks of a running broker',
      commands: [
        {
          name: 'show',
          summary: "a task's timeline: exchanges, approvals, uses, downstream events, revocations, anomalies",
          description: `Every exchange, approval, delegation hop, use, downstream event, revocation and anomaly of a task, in order (role security, or the orchestrator that opened it). ${adminApi}`,
          args: [{ name: 'task id', summary: 'the task', complete: 'none' }],
          options: [
            url,
            keyFile,
            { name: 'format', value: 'format', summary: 'text (default), json, or html (a page with one swim lane per plugin)', choices: ['text', 'json', 'html'] },
            { name: 'out', value: 'file', summary: 'write to a file instead of stdout' },
          ],
          exit: brokerExit,
          run: async (inv, io) => (await import('./task.js')).taskShowCommand(inv, io),
        },
      ],
    },
    {
      name: 'ingest',
      summary: 'link downstream logs to tasks and plugins',
      commands: [
        {
          name: 'cloudtrail',
          summary: 'link CloudTrail log files (JSON as AWS writes them to S3, gzip or plain) to tasks and plugins',
          args: [{ name: 'file|dir', summary: 'a log file or a folder of them', complete: 'file' }],
          options: [config()],
          run: async (inv, io) => (await import('./commands.js')).ingest('cloudtrail', inv, io),
        },
        {
          name: 'vault-audit',
          summary: 'link a Vault audit-device log (JSON lines) to tasks and plugins by lease id and token accessor',
          args: [{ name: 'file', summary: 'the audit log', complete: 'file' }],
          options: [config()],
          run: async (inv, io) => (await import('./commands.js')).ingest('vault-audit', inv, io),
        },
      ],
    },
    {
      name: 'hash-api-key',
      summary: 'print the sha256 to put in admin.api_keys',
      args: [{ name: 'key', summary: 'the API key', complete: 'none' }],
      run: async (inv, io) => {
        const { createHash } = await import('node:crypto');
        io.out(
          `${createHash('sha256')
            .update(inv.args[0] as string, 'utf8')
            .digest('hex')}\n`,
        );
        return 0;
      },
    },
    {
      name: 'schema',
      summary: 'write the config JSON Schema (for editors)',
      options: [{ name: 'out', value: 'file', summary: 'where (default: schemas/leash-config.schema.json)' }],
      run: async (inv, io) => (await import('./commands.js')).schema(inv, io),
    },
    {
      name: 'docs',
      summary: "regenerate docs/configuration.md's reference section, docs/review.md's rule catalogue or docs/cli.md",
      options: [
        { name: 'out', value: 'file', summary: 'where (default: docs/configuration.md, docs/review.md or docs/cli.md)' },
        { name: 'review', summary: "docs/review.md's rule catalogue" },
        { name: 'cli', summary: 'docs/cli.md, this command reference' },
      ],
      run: async (inv, io) => (await import('./commands.js')).docs(inv, io),
    },
    {
      name: 'completion',
      summary: 'print a shell completion script',
      description:
        'Print a completion script for bash or zsh, generated from the command tree. bash: `source <(leash completion bash)` (or save it in /etc/bash_completion.d/leash). zsh: `source <(leash completion zsh)`, or save it as _leash in a folder of $fpath.',
      args: [{ name: 'shell', summary: 'the shell', choices: ['bash', 'zsh'] }],
      run: async (inv, io) => {
        const { completionScript } = await import('./completion.js');
        io.out(completionScript(LEASH, inv.args[0] as 'bash' | 'zsh'));
        return 0;
      },
    },
    {
      name: 'version',
      summary: 'print the version of leash-broker (also --version)',
      run: async (_inv, io) => {
        io.out(`${(await import('../config/build-info.js')).buildInfo().version}\n`);
        return 0;
      },
    },
  ],
};

/**
 * Runs one command line and returns its exit code: 0 done, 1 failed, 2 a usage error
 * (unknown command or option, a missing argument). Output goes to `io.out`, every problem
 * to `io.err`. Some commands give 1 and 2 a meaning of their own (their `exit`).
 */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number | undefined> {
  const parsed = parseCommandLine(LEASH, argv, io.env);
  switch (parsed.kind) {
    case 'help':
      io.out(formatHelp(LEASH, parsed.path));
      return 0;
    case 'version':
      io.out(`${(await import('../config/build-info.js')).buildInfo().version}\n`);
      return 0;
    case 'usage':
      io.err(formatUsageError(LEASH, parsed.path, parsed.message, parsed.showHelp));
      return 2;
    case 'run':
      try {
        return await parsed.spec.run!(parsed.inv, io);
      } catch (e) {
        if (e instanceof UsageError) {
          io.err(formatUsageError(LEASH, parsed.inv.path, e.message));
          return 2;
        }
        io.err(`leash: ${e instanceof Error ? e.message : String(e)}\n`);
        return 1;
      }
  }
}
