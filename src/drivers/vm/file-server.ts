import { closeSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import brigSpawn from 'brig-spawn';
import type { SandboxPlan } from '../plan/index.ts';
import type { CgroupPlan } from '../host/index.ts';
import { renderHostView, startBwrap } from '../jail/index.ts';
import { VIRTIOFSD } from './qemu.ts';
import { egressViewMounts } from './egress.ts';
import { imagePrograms, imageView, unmappedMounts } from './image-view.ts';
import { networkViewMounts } from './network.ts';

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
    const options = ['--fd=5', '-o', 'source=/', '-o', 'sandbox=chroot', '-o', 'cache=auto', '-o', 'modcaps=-mknod:-setfcap', '-o', 'log_level=warn', '--rlimit-nofile=0'];
    // An image's root is its overlay, bound as / under the plan's mounts (image-view.ts); it has no virtiofsd or
    // bubblewrap of its own, so the host's come in with their loaders and libraries, under brig's directory.
    const image = plan.image ? imageView(plan.image, dir) : undefined;
    const programs = imagePrograms(plan);
    const argv = programs ? programs.virtiofsd.argv(...options) : [VIRTIOFSD, ...options];
    // allowlist: the bridge's parts, as the jail binds them, and Node for the guest's end of it (egress.ts).
    const mounts = [...unmappedMounts(plan), ...egressViewMounts(plan), ...networkViewMounts(plan), ...(programs?.mounts ?? [])];
    const view = renderHostView({ ...plan, mounts, limits: { ...plan.limits, cgroup } }, argv, { caps: VIRTIOFSD_CAPS, image });
    return startBwrap(view, ['ignore', 'ignore', messages], listening);
  } finally {
    closeSync(listening);
  }
}
