import { spawn, type ChildProcess } from 'node:child_process';

/**
 * `leash serve --config <path>` as its own process, as an operator runs it (stderr piped
 * for assertions; stdout, the audit lines, piped only when asked). `port` and
 * `managementPort` override the config's listen ports.
 */
export function spawnServe(configPath: string, port?: number | string, managementPort?: number | string, opts: { stdout?: boolean; args?: readonly string[] } = {}): ChildProcess {
  const args = [
    '--import',
    'tsx',
    'src/cli/main.ts',
    'serve',
    '--config',
    configPath,
    ...(port === undefined ? [] : ['--port', String(port)]),
    ...(managementPort === undefined ? [] : ['--management-port', String(managementPort)]),
    ...(opts.args ?? []),
  ];
  return spawn(process.execPath, args, { stdio: ['ignore', opts.stdout ? 'pipe' : 'ignore', 'pipe'] });
}
