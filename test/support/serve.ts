import { spawn, type ChildProcess } from 'node:child_process';

/** `leash serve --config <path>` as its own process, as an operator runs it (stderr piped for assertions). */
export function spawnServe(configPath: string, port?: number | string): ChildProcess {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', configPath, ...(port === undefined ? [] : ['--port', String(port)])];
  return spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
