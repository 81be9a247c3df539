import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { Sandbox, type SandboxOpts } from 'e2b';
import { BRIG, tempWorkspace } from './brig.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const ENVD = `${REPO}/dist/envd.cjs`;

export interface TestEnvd {
  /** http://host:port of envd. */
  url: string;
  /** The directory the sandbox works in (its workspace when jailed). */
  workspace: string;
  /** The envd process (or brig, when jailed). */
  process: ChildProcess;
  /** envd's stderr so far (for failure messages). */
  logs(): string;
  close(): Promise<void>;
}

/**
 * envd from its bundle, exactly as a sandbox runs it: unjailed, or inside a
 * `brig run` jail (with the host network, so the test can reach its TCP port;
 * daemon sandboxes reach it through a unix socket instead).
 */
export async function startTestEnvd(options: { jailed: boolean; accessToken?: string; env?: NodeJS.ProcessEnv }): Promise<TestEnvd> {
  const workspace = tempWorkspace('brig-envd-');
  const envdArgs = [ENVD, '--listen', '127.0.0.1:0'];
  const env = { ...process.env, ...options.env, ...(options.accessToken ? { BRIG_ENVD_ACCESS_TOKEN: options.accessToken } : {}) };
  const child = options.jailed
    ? spawn(BRIG, ['run', '--net', 'host', '--ro', REPO, '--env', 'BRIG_ENVD_ACCESS_TOKEN', '--', process.execPath, ...envdArgs], { cwd: workspace.dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, envdArgs, { cwd: workspace.dir, env: { ...env, HOME: workspace.dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /envd listening on (\S+)/.exec(stdout);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`envd exited (${code}) before listening: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url: `http://${address}`,
    workspace: workspace.dir,
    process: child,
    logs: () => stderr,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      workspace.remove();
    },
  };
}

/** The real e2b SDK, pointed at a test envd (debug mode: no control plane). */
export function sandboxFor(envd: TestEnvd, extra: Record<string, unknown> = {}): Promise<Sandbox> {
  return Sandbox.create({ debug: true, sandboxUrl: envd.url, apiKey: 'test', ...extra } as SandboxOpts);
}

/**
 * One envd and an SDK sandbox on it for a describe block, started in before()
 * and closed in after() (E2B's sandboxTest fixture). `take` receives them.
 */
export function useEnvd(jailed: boolean, take: (started: { envd: TestEnvd; sandbox: Sandbox }) => void): void {
  let envd: TestEnvd | undefined;
  before(async () => {
    envd = await startTestEnvd({ jailed });
    take({ envd, sandbox: await sandboxFor(envd) });
  });
  after(() => envd?.close());
}

/** The e2b SDK speaks TCP; a sandbox listens on a unix socket. This stands in for the daemon's gateway. */
export function tcpToUnix(socketPath: string): Promise<{ url: string; server: Server }> {
  const server = createServer((client) => {
    const upstream = connect(socketPath);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server })));
}

