import type { MemoryEvent } from '../../protocol/index.ts';
import { killCgroup, outOfMemory, type CgroupPlan } from './cgroup.ts';

/**
 * For a tier whose sandbox is one process to the host (gVisor's Sentry, a
 * VM's QEMU): there is no largest guest process to choose at the memory
 * limit, so the whole sandbox ends there. On v1 the cgroup pauses at its
 * limit (oom_control 1, the plan's choice) and nothing would ever free
 * memory, so the whole cgroup is killed; on v2 the kernel has killed the
 * group already (memory.oom.group). `ended` is told once, with `reason`.
 */
const POLL_MS = 50;

export function watchWholeSandboxOom(cgroup: Pick<CgroupPlan, 'dirs' | 'killDir' | 'oomFile'>, reason: string, ended: (event: MemoryEvent) => void): { close(): void } {
  let closed = false;
  const timer = setInterval(() => {
    if (closed || !outOfMemory(cgroup as CgroupPlan)) return;
    close();
    killCgroup(cgroup);
    ended({ time: new Date().toISOString(), action: 'kill-sandbox', pid: null, hostPid: null, command: null, rssBytes: null, main: false, reason });
  }, POLL_MS);
  timer.unref();
  const close = (): void => {
    closed = true;
    clearInterval(timer);
  };
  return { close };
}
