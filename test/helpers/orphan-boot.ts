import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { SandboxHandle } from '../../src/drivers/index.ts';
import { ENVD, REPO } from './envd.ts';

/** envd's /health status on a sandbox's endpoint; 0 when nothing answers. */
export function envdHealth(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health' }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * A sandbox of `tier` booted by a process of its own, as a daemon boots it,
 * which is then killed with SIGKILL: the handle it wrote down before it died.
 * What a daemon restart leaves for the next one to reattach or stop.
 */
export async function bootThenKillBooter(tier: string, options: { id: string; workDir: string; stateDir: string; memoryMiB?: number }): Promise<SandboxHandle> {
  const { id, workDir, stateDir, memoryMiB } = options;
  const script = `
    import { driverFor } from '${REPO}/src/drivers/index.ts';
    import { buildPolicy, memory, resolvePolicy, workspace } from '${REPO}/src/policy/index.ts';
    import { bindEnvdSocket } from '${REPO}/src/daemon/sandboxes/envd-socket.ts';
    const changes = [workspace(${JSON.stringify(workDir)}), ...(${JSON.stringify(memoryMiB ?? null)} ? [memory(${JSON.stringify(memoryMiB ?? 0)})] : [])];
    const policy = resolvePolicy(buildPolicy(...changes), { cwd: ${JSON.stringify(workDir)}, home: process.env.HOME ?? '/root' });
    const handle = await driverFor(${JSON.stringify(tier)}).boot({ id: ${JSON.stringify(id)}, policy, stateDir: ${JSON.stringify(stateDir)}, envd: { bundle: ${JSON.stringify(ENVD)}, accessToken: 't', socket: bindEnvdSocket(${JSON.stringify(stateDir)} + '/envd') } });
    process.stdout.write(JSON.stringify(handle) + '\\n');
    setInterval(() => {}, 1000);`;
  const booter = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  const handle = await new Promise<SandboxHandle>((resolve, reject) => {
    let out = '';
    booter.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out) as SandboxHandle);
    });
    booter.once('exit', (code) => reject(new Error(`the booting process exited (${code})`)));
  });
  const exited = new Promise((resolve) => booter.once('exit', resolve));
  booter.kill('SIGKILL');
  await exited;
  return handle;
}
