import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Liveness, SandboxHandle, SandboxUsage } from '../driver.ts';
import { processLiveness } from './records.ts';
import type { CgroupPlan } from './cgroup.ts';

/**
 * What a daemon sandbox's host side says about it, for every tier that runs
 * as host processes: its cgroups' usage and emptiness, and whether envd
 * answers on its socket.
 */

/** Memory, tasks and CPU time charged to the sandbox's cgroups (v1 or v2). */
export function cgroupUsage(cgroup: Pick<CgroupPlan, 'version' | 'dirs'>): SandboxUsage {
  const read = (file: string): number => {
    for (const dir of cgroup.dirs) {
      try {
        return Number(readFileSync(`${dir}/${file}`, 'utf8').trim());
      } catch {
        // Not in this hierarchy.
      }
    }
    return 0;
  };
  const memoryBytes = cgroup.version === 'v1' ? read('memory.usage_in_bytes') : read('memory.current');
  const cpuUsec = cgroup.version === 'v1' ? Math.round(read('cpuacct.usage') / 1000) : cpuStatUsec(cgroup.dirs);
  const memoryCacheBytes = statField(cgroup.dirs, 'memory.stat', cgroup.version === 'v1' ? 'cache' : 'file');
  return { memoryBytes, pids: read('pids.current'), cpuUsec, ...(memoryCacheBytes === null ? {} : { memoryCacheBytes }) };
}

/** One `KEY N` line of a cgroup stat file, from the first hierarchy that has it. */
function statField(dirs: string[], file: string, key: string): number | null {
  for (const dir of dirs) {
    try {
      const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(`${dir}/${file}`, 'utf8'));
      if (match) return Number(match[1]);
    } catch {
      // Not here.
    }
  }
  return null;
}

/** cgroup v2's cpu.stat: `usage_usec N`. */
function cpuStatUsec(dirs: string[]): number {
  for (const dir of dirs) {
    try {
      const match = /^usage_usec (\d+)$/m.exec(readFileSync(`${dir}/cpu.stat`, 'utf8'));
      if (match) return Number(match[1]);
    } catch {
      // Not here.
    }
  }
  return 0;
}

/** 'gone' when no process is left in the cgroups (or they are removed), 'alive' while one is, 'unknown' when one could not be read. */
export function cgroupLiveness(dirs: string[]): Liveness {
  let unknown = false;
  for (const dir of dirs) {
    try {
      if (readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() !== '') return 'alive';
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') unknown = true;
    }
  }
  return unknown ? 'unknown' : 'gone';
}

/** A daemon sandbox's: its first process (pid and start time: pids are reused), then, once that is gone, whatever is left in its cgroups (the kernel may still be killing it). */
export function sandboxLiveness(handle: Pick<SandboxHandle, 'pid' | 'pidStart'>, cgroupDirs: string[]): Liveness {
  const first = processLiveness(handle.pid, handle.pidStart);
  return first === 'gone' ? cgroupLiveness(cgroupDirs) : first;
}

/** Whether envd answers its /health on the unix socket. */
export function envdHealthy(socketPath: string, timeoutMs?: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', method: 'GET' }, (response) => {
      response.resume();
      resolve(response.statusCode === 204);
    });
    req.on('error', () => resolve(false));
    // A stopped envd still has its socket accepted by the kernel: only a deadline tells.
    if (timeoutMs !== undefined) req.setTimeout(timeoutMs, () => req.destroy());
    req.end();
  });
}
