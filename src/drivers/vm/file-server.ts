import { closeSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import brigSpawn from 'brig-spawn';
import type { SandboxPlan } from '../plan/index.ts';
import type { CgroupPlan } from '../host/index.ts';
import { renderHostView, startBwrap } from '../jail/index.ts';
import { VIRTIOFSD } from './qemu.ts';
import { egressViewMounts } from './egress.ts';

/** What virtiofsd keeps of root's capabilities: enough to act as any guest uid on the view's files; no mknod, no file capabilities. */
const VIRTIOFSD_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SYS_CHROOT', 'CAP_SETPCAP'];

/**
 * virtiofsd, serving the sandbox's view (built by bubblewrap as the jail's,
 * jail/host-view.ts) on `<dir>/fs.sock`, a socket brig made (blocking:
 * virtiofsd accepts once, on its own). Its messages go to `messages`: a pipe
 * for a foreground run, a log file for a sandbox that outlives brig.
 */
export function startFileServer(plan: SandboxPlan, dir: string, cgroup: CgroupPlan, messages: 'pipe' | number): ChildProcess {
  const listening = brigSpawn.listenUnix(`${dir}/fs.sock`, 1);
  try {
    const argv = [VIRTIOFSD, '--fd=5', '-o', 'source=/', '-o', 'sandbox=chroot', '-o', 'cache=auto', '-o', 'modcaps=-mknod:-setfcap', '-o', 'log_level=warn', '--rlimit-nofile=0'];
    // allowlist: the bridge's parts, as the jail binds them, and Node for the guest's end of it (egress.ts).
    const view = renderHostView({ ...plan, mounts: [...plan.mounts, ...egressViewMounts(plan)], limits: { ...plan.limits, cgroup } }, argv, { caps: VIRTIOFSD_CAPS });
    return startBwrap(view, ['ignore', 'ignore', messages], listening);
  } finally {
    closeSync(listening);
  }
}
