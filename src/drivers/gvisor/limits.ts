import type { MemoryEvent } from '../../protocol/index.ts';
import { watchWholeSandboxOom, type CgroupPlan } from '../host/index.ts';

/**
 * The sandbox's limits, held by the host cgroups runsc's processes start in
 * (the Sentry, the gofer, the ptrace stubs). gVisor's guest processes are
 * not host processes: the host sees one Sentry whose memory is all of
 * theirs, so there is no largest guest process to choose at the limit.
 * Whatever the policy's onOutOfMemory says, the whole sandbox ends there.
 */

/**
 * Host tasks gVisor itself needs (runsc, the gofer, the Sentry's Go
 * threads), and what each guest process adds on top: on the ptrace platform
 * every guest process has a stub of its own, and the Sentry a thread per
 * traced task (measured here: 124 host tasks for 2 guest processes, 620 for
 * 22). This runsc does not enforce a pids limit inside, so the policy's
 * pids becomes a host limit of about as many guest processes: the host is
 * safe from a fork bomb, the guest count is approximate.
 */
export const GVISOR_BASE_TASKS = 256;
export const GVISOR_TASKS_PER_PROCESS = 32;

/**
 * The plan's cgroup as gVisor needs it: the pids limit scaled to host tasks
 * (above), and the kernel's v2 killer told to take the whole group (killing
 * one of runsc's processes alone would leave a sandbox half dead).
 */
export function sandboxCgroup(cgroup: CgroupPlan): CgroupPlan {
  const writes = cgroup.writes.map(([file, value]): [string, string] => {
    if (file.endsWith('/memory.oom.group')) return [file, '1'];
    if (file.endsWith('/pids.max') && /^\d+$/.test(value)) return [file, String(GVISOR_BASE_TASKS + Number(value) * GVISOR_TASKS_PER_PROCESS)];
    return [file, value];
  });
  return { ...cgroup, writes };
}

/** At the memory limit the whole sandbox ends (host/whole-oom.ts): the host sees one Sentry, not the guest's processes. */
export function watchOutOfMemory(cgroup: Pick<CgroupPlan, 'dirs' | 'killDir' | 'oomFile'>, ended: (event: MemoryEvent) => void): { close(): void } {
  return watchWholeSandboxOom(cgroup, 'the sandbox used all of its memory (gVisor ends the whole sandbox: its processes are one Sentry to the host)', ended);
}
