import type { SandboxPlan } from '../plan/index.ts';
import type { CgroupPlan } from '../host/index.ts';

/**
 * A VM's limits come in two parts. Inside: the guest's own size, its memory
 * (the policy's) and vCPUs (the policy's cpus, rounded up, at most the
 * host's). Outside: the host cgroups QEMU and virtiofsd start in, whose
 * memory limit is the guest's plus what QEMU and virtiofsd need of their own,
 * and whose pids limit counts their threads, not the guest's processes (the
 * guest kernel counts those).
 */

/** QEMU's own memory (its code, TCG's translation cache, device state) and virtiofsd's, over the guest's RAM. */
export const VM_HOST_OVERHEAD_MIB = 384;
/** QEMU's threads (vCPUs, I/O) and virtiofsd's pool: a fixed host budget. */
export const VM_HOST_TASKS = 256;

export function guestSize(plan: SandboxPlan, hostCpus: number): { memoryMiB: number; cpus: number } {
  const { memoryMiB, cpus } = plan.policy.resources;
  return { memoryMiB, cpus: Math.max(1, Math.min(hostCpus, Math.ceil(cpus))) };
}

/** The plan's cgroup for the host side of a VM; the kernel's v2 killer takes the whole group (half a VM is no VM). */
export function vmCgroup(cgroup: CgroupPlan, memoryMiB: number): CgroupPlan {
  const hostBytes = String((memoryMiB + VM_HOST_OVERHEAD_MIB) * 1024 * 1024);
  const writes = cgroup.writes.map(([file, value]): [string, string] => {
    if (/\/memory\.(max|limit_in_bytes|memsw\.limit_in_bytes)$/.test(file)) return [file, hostBytes];
    if (file.endsWith('/memory.oom.group')) return [file, '1'];
    if (file.endsWith('/pids.max')) return [file, String(VM_HOST_TASKS)];
    return [file, value];
  });
  return { ...cgroup, writes };
}
