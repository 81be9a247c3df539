import { mkdirSync, readFileSync, rmdirSync, writeFileSync, existsSync } from 'node:fs';
import { BrigError, type ErrorCode } from '../../protocol/index.ts';
import type { ResourcesPolicy } from '../../policy/index.ts';

/**
 * The jail's cgroups: memory, CPU and task limits, a way to kill every
 * process at once, and the count of OOM kills. Nested under the cgroups the
 * caller already sits in, so a caller's own limits still hold.
 *
 * Two layouts: cgroup v2 (one hierarchy, what systemd hosts use) and v1,
 * where each controller has its own hierarchy and a cgroup2 mount may sit
 * beside them ("hybrid"); there the cgroup2 side gives us cgroup.kill.
 */

export interface CgroupPlan {
  version: 'v1' | 'v2';
  /** Directories the jail's processes join, one per hierarchy. */
  dirs: string[];
  /** Where the calling thread sits now, one per hierarchy (it returns there after the spawn). */
  homes: string[];
  /** Limits, written in order after the directories exist. */
  writes: Array<[file: string, value: string]>;
  /** A directory with cgroup.kill, when the kernel has one for us. */
  killDir: string | null;
  /** memory.oom_control (v1) or memory.events (v2): where an OOM shows. */
  oomFile: string;
  /** Controllers to switch on in parents' cgroup.subtree_control first (v2 only). */
  enable: Array<[file: string, value: string]>;
}

interface Mount {
  /** The hierarchy's mount point. */
  point: string;
  /** The cgroup path at the root of this mount (non-"/" inside containers). */
  root: string;
  version: 'v1' | 'v2';
  controllers: string[];
}

const PERIOD_US = 100_000;

export function planCgroup(id: string, resources: ResourcesPolicy): CgroupPlan {
  const mounts = cgroupMounts();
  const own = ownCgroups();
  const name = `brig-${id}`;
  const memoryBytes = String(resources.memoryMiB * 1024 * 1024);
  const quota = String(Math.max(1000, Math.round(resources.cpus * PERIOD_US)));
  const unified = mounts.find((mount) => mount.version === 'v2');
  const v1 = (controller: string): Mount | undefined => mounts.find((mount) => mount.version === 'v1' && mount.controllers.includes(controller));

  const memory = v1('memory');
  if (!memory) {
    if (!unified) throw unavailable('no cgroup hierarchy is mounted');
    const home = pathIn(unified, own.get('') ?? '/');
    const dir = `${home}/${name}`;
    return {
      version: 'v2',
      dirs: [dir],
      homes: [home],
      writes: [
        [`${dir}/memory.max`, memoryBytes],
        [`${dir}/memory.swap.max`, '0'],
        // v2 cannot pause a jail at its limit: the kernel's killer acts, on the largest process
        // (kill-process; memory.ts protects brig's own) or on the whole jail (kill-sandbox).
        [`${dir}/memory.oom.group`, resources.onOutOfMemory === 'kill-sandbox' ? '1' : '0'],
        [`${dir}/pids.max`, String(resources.pids)],
        [`${dir}/cpu.max`, `${quota} ${PERIOD_US}`],
      ],
      killDir: dir,
      oomFile: `${dir}/memory.events`,
      enable: [[`${home}/cgroup.subtree_control`, '+memory +pids +cpu']],
    };
  }

  const pids = v1('pids');
  const cpu = v1('cpu');
  if (!pids || !cpu) throw unavailable('the pids or cpu controller is not mounted');
  const at = (mount: Mount, controller: string): string => pathIn(mount, own.get(controller) ?? '/');
  const homes = [at(memory, 'memory'), at(pids, 'pids'), at(cpu, 'cpu')];
  const [memoryDir, pidsDir, cpuDir] = homes.map((home) => `${home}/${name}`) as [string, string, string];
  // The cgroup2 side of a hybrid host is left alone: joining it would cost an RCU grace
  // period (see spawnInside), and the pid namespace already gives a kill-all (launch.ts).
  const dirs = [memoryDir, pidsDir, cpuDir];
  // CPU time used, for stats: cpuacct, when it is a hierarchy of its own (where it shares cpu's, cpuDir has it).
  const cpuacct = v1('cpuacct');
  if (cpuacct && cpuacct !== cpu) {
    const home = at(cpuacct, 'cpuacct');
    homes.push(home);
    dirs.push(`${home}/${name}`);
  }
  const writes: Array<[string, string]> = [
    [`${memoryDir}/memory.limit_in_bytes`, memoryBytes],
    // The kernel's killer is off: at its limit the jail pauses (under_oom) and memory.ts
    // chooses, so that envd or the agent is never the one killed.
    [`${memoryDir}/memory.oom_control`, '1'],
    [`${pidsDir}/pids.max`, String(resources.pids)],
    [`${cpuDir}/cpu.cfs_period_us`, String(PERIOD_US)],
    [`${cpuDir}/cpu.cfs_quota_us`, quota],
  ];
  // With swap accounting, memory+swap gets the same cap: the jail cannot swap its way past it.
  if (existsSync(`${at(memory, 'memory')}/memory.memsw.limit_in_bytes`)) writes.splice(1, 0, [`${memoryDir}/memory.memsw.limit_in_bytes`, memoryBytes]);
  return { version: 'v1', dirs, homes, writes, killDir: null, oomFile: `${memoryDir}/memory.oom_control`, enable: [] };
}

/** Create the directories and write the limits; undo everything on failure. */
export function createCgroup(plan: CgroupPlan): void {
  const made: string[] = [];
  try {
    for (const [file, value] of plan.enable) enableControllers(file, value);
    for (const dir of plan.dirs) {
      mkdirSync(dir);
      made.push(dir);
    }
    for (const [file, value] of plan.writes) writeLimit(file, value);
  } catch (error) {
    for (const dir of made.reverse()) tryRmdir(dir);
    if (error instanceof BrigError) throw error;
    throw unavailable((error as Error).message);
  }
}

/**
 * Run `spawn` with the calling thread inside the jail's cgroups, so the child
 * is born in them: nothing it runs ever executes outside its limits.
 *
 * On v1 the thread moves itself by writing 0 to `tasks`: a thread moving
 * itself is the one migration the kernel does without its global
 * threadgroup lock, whose RCU grace period costs about 12 ms per move. On v2
 * only whole processes move (through cgroup.procs), and they pay it.
 */
export function spawnInside<T>(plan: CgroupPlan, spawn: () => T): T {
  const [file, self] = plan.version === 'v1' ? ['tasks', '0'] : ['cgroup.procs', String(process.pid)];
  try {
    for (const dir of plan.dirs) writeFileSync(`${dir}/${file}`, self);
    return spawn();
  } finally {
    for (const home of plan.homes) {
      try {
        writeFileSync(`${home}/${file}`, self);
      } catch {
        // Our own cgroup vanished under us; staying in the jail's is harmless until we exit.
      }
    }
  }
}

/**
 * Whether the jail hit its memory limit: paused at it (v1) or had the kernel
 * kill in it (v2). Under kill-process that is memory.ts's to resolve, so only
 * kill-sandbox asks.
 */
export function outOfMemory(plan: CgroupPlan): boolean {
  try {
    return /^(under_oom 1|oom_kill [1-9]\d*|oom_group_kill [1-9]\d*)$/m.test(readFileSync(plan.oomFile, 'utf8'));
  } catch {
    return false;
  }
}

export function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILL every process of the jail. */
export function killCgroup(plan: Pick<CgroupPlan, 'dirs' | 'killDir'>): void {
  if (plan.killDir && existsSync(`${plan.killDir}/cgroup.kill`)) {
    try {
      writeFileSync(`${plan.killDir}/cgroup.kill`, '1');
      return;
    } catch {
      // Fall through to killing one by one.
    }
  }
  for (const dir of plan.dirs) {
    for (const pid of cgroupPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

/** Kill what is left, wait for the cgroups to empty, remove them. True when all are gone. */
export async function removeCgroup(plan: Pick<CgroupPlan, 'dirs' | 'killDir'>): Promise<boolean> {
  // Exiting processes leave cgroup.procs a moment after their parent saw them die: retry briefly.
  for (let attempt = 0; attempt < 2000; attempt++) {
    const busy = plan.dirs.filter((dir) => existsSync(dir));
    if (busy.length === 0) return true;
    if (busy.some((dir) => cgroupPids(dir).length > 0)) killCgroup(plan);
    for (const dir of busy) tryRmdir(dir);
    if (busy.every((dir) => !existsSync(dir))) return true;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return false;
}

/** A daemon sandbox's teardown: everything in its cgroups killed, the cgroups removed; `code` names the tier's error when a process will not die. */
export async function endSandboxCgroup(plan: Pick<CgroupPlan, 'dirs' | 'killDir'>, sandboxId: string, code: ErrorCode): Promise<void> {
  killCgroup(plan);
  if (await removeCgroup(plan)) return;
  const left = plan.dirs.flatMap((dir) => cgroupPids(dir));
  throw new BrigError(code, `sandbox ${sandboxId}: processes ${left.join(', ')} would not die`, 'they may be stuck in the kernel (D state); retry the stop');
}

function enableControllers(file: string, value: string): void {
  const current = readFileSync(file, 'utf8');
  const missing = value.split(' ').filter((item) => !current.split(/\s+/).includes(item.slice(1)));
  if (missing.length === 0) return;
  try {
    writeFileSync(file, missing.join(' '));
  } catch (error) {
    throw unavailable(`cannot enable ${missing.join(' ')} in ${file}: ${(error as Error).message}`);
  }
}

/**
 * The kernel refuses a value it cannot hold (EINVAL, ERANGE): that is the
 * policy's fault, not the host's, so it must not get the "mount the
 * controllers" hint. The schema's bounds keep such values out; this names the
 * limit should a kernel be stricter still.
 */
function writeLimit(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ERANGE') throw error;
    const limit = file.slice(file.lastIndexOf('/') + 1);
    throw new BrigError('BRIG_POLICY_INVALID', `the kernel refuses ${value} for the jail's ${limit} (${code})`, 'lower the matching resources field of the policy (memoryMiB, cpus, pids); docs/policy.md gives each one\'s range');
  }
}

function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Still busy or already gone; removeCgroup retries.
  }
}

function unavailable(reason: string): BrigError {
  return new BrigError(
    'BRIG_CGROUP_UNAVAILABLE',
    `cannot set up the jail's cgroup: ${reason}`,
    process.getuid?.() === 0
      ? 'mount the cgroup controllers memory, pids and cpu (cgroup v2, or v1 under /sys/fs/cgroup/<controller>)'
      : 'run brig as root, or from a cgroup v2 subtree delegated to you with memory, pids and cpu enabled in its cgroup.subtree_control',
  );
}

function pathIn(mount: Mount, cgroupPath: string): string {
  const relative = mount.root !== '/' && cgroupPath.startsWith(mount.root) ? cgroupPath.slice(mount.root.length) : cgroupPath;
  return (mount.point + relative).replace(/\/+$/, '');
}

function cgroupMounts(): Mount[] {
  const mounts: Mount[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fstype, , superOptions = ''] = right.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const fields = left.split(' ');
    const root = fields[3] ?? '/';
    const point = unescapeMount(fields[4] ?? '');
    if (fstype === 'cgroup2') mounts.push({ point, root, version: 'v2', controllers: [] });
    else mounts.push({ point, root, version: 'v1', controllers: superOptions.split(',').filter((option) => !['rw', 'ro'].includes(option) && !option.includes('=')) });
  }
  return mounts;
}

/** The caller's cgroup path per hierarchy, keyed by its controller list ('' for cgroup2). */
function ownCgroups(): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const [, controllers = '', path = '/'] = match;
    own.set(controllers, path);
    for (const controller of controllers.split(',')) own.set(controller, path);
  }
  return own;
}

function unescapeMount(field: string): string {
  return field.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
