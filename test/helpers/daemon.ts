import { spawn, type ChildProcess } from 'node:child_process';
import { BRIG } from './brig.ts';

export interface RunningDaemon {
  url: string;
  process: ChildProcess;
  /** SIGTERM by default (a clean shutdown); SIGKILL to play a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `brig serve` as users start it, on a free port, with its own state
 * directory. The pool defaults to 0, so nothing is left running after a test.
 */
export async function serveDaemon(
  stateDir: string,
  options: {
    apiKey: string;
    pool?: number;
    env?: NodeJS.ProcessEnv;
    /** fds the daemon inherits from 3 on, as a careless parent would leave them */
    extraFds?: Array<number | 'ignore' | 'pipe'>;
    /** More `brig serve` flags (budgets, connection caps). */
    args?: string[];
  },
): Promise<RunningDaemon> {
  const child = spawn(BRIG, ['serve', '--port', '0', '--state', stateDir, '--pool', String(options.pool ?? 0), ...(options.args ?? [])], {
    env: { ...process.env, ...options.env, BRIG_API_KEY: options.apiKey },
    stdio: ['ignore', 'pipe', 'pipe', ...(options.extraFds ?? [])],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (\S+)/.exec(stdout);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`brig serve exited (${code}): ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url,
    process: child,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
