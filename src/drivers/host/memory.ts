import { readFileSync, writeFileSync } from 'node:fs';
import type { MemoryEvent } from '../../protocol/index.ts';
import type { OutOfMemoryAction } from '../../policy/index.ts';
import { cgroupPids, type CgroupPlan } from './cgroup.ts';
import { processStart, statFields } from './records.ts';

/**
 * What happens when a jail uses all of its memory (resources.onOutOfMemory).
 *
 * kill-process, as a VM or a Docker container does it: the largest process
 * is killed and the rest live on. brig's own processes (bubblewrap, the
 * egress relay) are never chosen, nor the jail's main process when the
 * caller protects it (envd in a daemon sandbox, the agent under brig agent):
 * a test run that blows its memory does not end the agent's conversation.
 * kill-sandbox: the whole jail is killed.
 *
 * cgroup v1: the kernel's OOM killer is off in the jail's memory cgroup
 * (oom_kill_disable), so at the limit the kernel pauses every process that
 * asks for more (under_oom 1) and waits. This guard watches for that, picks
 * the victim itself (the most resident memory, swap and page tables, as the
 * kernel would count it, among processes that are not protected) and sends
 * it SIGKILL; the paused processes go on once its memory is freed. When only
 * protected processes are left, nothing else can free memory: the jail ends.
 *
 * cgroup v2 has no way to pause: the kernel's killer chooses (memory.oom.group
 * 0 for kill-process, 1 for kill-sandbox). The guard marks the protected
 * processes with oom_score_adj -1000 (which takes CAP_SYS_RESOURCE; without
 * it they are ordinary candidates) and records each kill memory.events counts.
 */

export interface MemoryGuardOptions {
  cgroup: Pick<CgroupPlan, 'version' | 'dirs'>;
  /** The jail's first process (bubblewrap's init, pid 1 inside). */
  jailPid: number;
  action: OutOfMemoryAction;
  /** Never choose the jail's main process (the first its init started: envd, or the agent). */
  protectMain: boolean;
  /** allowlist mode: the egress relay's child (the main process's first child) is brig's too. */
  relay: boolean;
  onEvent(event: MemoryEvent): void;
  /** Kill the whole jail: kill-sandbox, or nothing but protected processes left to kill. */
  endJail(): void;
}

export interface MemoryGuard {
  close(): void;
}

const POLL_MS = 100;
/** After a kill, polls to wait for the victim to free its memory before another is chosen. */
const VICTIM_WAIT_POLLS = 50;
const PAGE_KIB = 4;

export function guardMemory(options: MemoryGuardOptions): MemoryGuard {
  const dir = options.cgroup.dirs[0] ?? '';
  const check = options.cgroup.version === 'v1' ? v1Check(dir, options) : v2Check(dir, options);
  let closed = false;
  const timer = setInterval(() => {
    if (closed) return;
    if (check() === 'ended') guard.close();
  }, POLL_MS);
  timer.unref();
  const guard = {
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
  return guard;
}

type Outcome = 'watching' | 'ended';

function v1Check(dir: string, options: MemoryGuardOptions): () => Outcome {
  let victim: { hostPid: number; start: string; polls: number } | null = null;
  return () => {
    let control: string;
    try {
      control = readFileSync(`${dir}/memory.oom_control`, 'utf8');
    } catch {
      // The cgroup is gone: so is the jail.
      return 'ended';
    }
    if (!/^under_oom 1$/m.test(control)) return 'watching';
    // The last victim may still be freeing its memory: wait for it rather than kill a second process.
    if (victim && processStart(victim.hostPid) === victim.start && victim.polls++ < VICTIM_WAIT_POLLS) return 'watching';
    if (options.action === 'kill-sandbox') return endJail(options, 'the jail used all of its memory; resources.onOutOfMemory is kill-sandbox');
    const processes = jailProcesses(dir);
    const spared = protectedPids(processes, options);
    const main = eldestChild(processes, options.jailPid);
    const candidates = processes.filter((process) => !spared.has(process.hostPid) && process.badnessKiB > 0);
    const chosen = candidates.sort((a, b) => b.badnessKiB - a.badnessKiB)[0];
    if (!chosen) return endJail(options, 'the jail used all of its memory and only its protected processes hold it');
    // Pids are reused: kill only the process that was chosen.
    if (processStart(chosen.hostPid) !== chosen.start) return 'watching';
    try {
      process.kill(chosen.hostPid, 'SIGKILL');
    } catch {
      return 'watching';
    }
    victim = { hostPid: chosen.hostPid, start: chosen.start, polls: 0 };
    options.onEvent({
      time: new Date().toISOString(),
      action: 'kill-process',
      pid: chosen.pid,
      hostPid: chosen.hostPid,
      command: chosen.command,
      rssBytes: chosen.rssKiB * 1024,
      main: chosen.hostPid === main?.hostPid,
      reason: 'the jail used all of its memory: its largest process was killed',
    });
    return 'watching';
  };
}

function v2Check(dir: string, options: MemoryGuardOptions): () => Outcome {
  const counts = (): { kills: number; groupKills: number } | null => {
    try {
      const events = readFileSync(`${dir}/memory.events`, 'utf8');
      const count = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(events)?.[1] ?? 0);
      return { kills: count('oom_kill'), groupKills: count('oom_group_kill') };
    } catch {
      return null;
    }
  };
  // Kills before this guard started (a daemon that restarted) were recorded by the one before.
  let seen = counts() ?? { kills: 0, groupKills: 0 };
  let marked = false;
  return () => {
    const now = counts();
    if (!now) return 'ended';
    if (!marked) marked = markProtected(dir, options);
    else unprotectChildren(dir, options);
    const fresh = now.kills - seen.kills;
    const groupKilled = now.groupKills > seen.groupKills;
    seen = now;
    if (options.action === 'kill-sandbox' && (fresh > 0 || groupKilled)) return endJail(options, 'the jail used all of its memory; resources.onOutOfMemory is kill-sandbox');
    for (let kill = 0; kill < fresh; kill++) {
      options.onEvent({
        time: new Date().toISOString(),
        action: 'kill-process',
        pid: null,
        hostPid: null,
        command: null,
        rssBytes: null,
        main: false,
        reason: 'the jail used all of its memory: the kernel killed its largest process (the host\'s kernel log names it)',
      });
    }
    return 'watching';
  };
}

function endJail(options: MemoryGuardOptions, reason: string): Outcome {
  options.endJail();
  options.onEvent({ time: new Date().toISOString(), action: 'kill-sandbox', pid: null, hostPid: null, command: null, rssBytes: null, main: false, reason });
  return 'ended';
}

interface JailProcess {
  hostPid: number;
  parent: number;
  /** Start time in clock ticks since boot, as text (compared as a number). */
  start: string;
  /** Its pid in the jail's pid namespace. */
  pid: number;
  command: string;
  rssKiB: number;
  /** What the kernel's OOM killer weighs: resident memory, swap and page tables. */
  badnessKiB: number;
}

function jailProcesses(dir: string): JailProcess[] {
  const found: JailProcess[] = [];
  for (const hostPid of cgroupPids(dir)) {
    const stat = statFields(hostPid);
    let status: string;
    try {
      status = readFileSync(`/proc/${hostPid}/status`, 'utf8');
    } catch {
      continue;
    }
    if (!stat) continue;
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
    const kib = (name: string): number => Number(/^(\d+)/.exec(field(name))?.[1] ?? 0);
    const nsPids = field('NSpid').split(/\s+/).filter(Boolean).map(Number);
    found.push({
      hostPid,
      parent: Number(stat[1]),
      start: stat[19] ?? '',
      pid: nsPids[nsPids.length - 1] ?? hostPid,
      command: printable(field('Name')),
      rssKiB: kib('VmRSS'),
      badnessKiB: kib('VmRSS') + kib('VmSwap') + Math.ceil(kib('VmPTE') / PAGE_KIB) * PAGE_KIB,
    });
  }
  return found;
}

/**
 * brig's own processes, and the main one when asked: bubblewrap outside
 * (init's parent), its init, the first process init started (the earliest of
 * its children: orphans it adopts later start later), and in allowlist mode
 * the relay child that process forked before it became the command.
 */
function protectedPids(processes: JailProcess[], options: MemoryGuardOptions): Set<number> {
  const spared = new Set<number>([options.jailPid]);
  const byPid = new Map(processes.map((process) => [process.hostPid, process]));
  const parent = byPid.get(options.jailPid)?.parent;
  if (parent !== undefined && byPid.has(parent)) spared.add(parent);
  const main = eldestChild(processes, options.jailPid);
  if (main && options.protectMain) spared.add(main.hostPid);
  const relay = main && options.relay ? eldestChild(processes, main.hostPid) : undefined;
  if (relay) spared.add(relay.hostPid);
  return spared;
}

function eldestChild(processes: JailProcess[], parent: number): JailProcess | undefined {
  return processes.filter((process) => process.parent === parent).sort((a, b) => Number(a.start) - Number(b.start) || a.hostPid - b.hostPid)[0];
}

/** cgroup v2: ask the kernel's killer to pass over the protected processes. True once done (or not permitted). */
function markProtected(dir: string, options: MemoryGuardOptions): boolean {
  const processes = jailProcesses(dir);
  if (options.protectMain && !eldestChild(processes, options.jailPid)) return false;
  for (const hostPid of protectedPids(processes, options)) {
    try {
      writeFileSync(`/proc/${hostPid}/oom_score_adj`, '-1000');
    } catch {
      // Lowering it takes CAP_SYS_RESOURCE: without it they stay ordinary candidates (docs/jail.md).
      return true;
    }
  }
  return true;
}

/**
 * cgroup v2: oom_score_adj is inherited through fork and exec, so every
 * command envd (or the agent) starts would carry its -1000 and the kernel's
 * killer would find nothing it may kill. Each tick puts the others back to 0
 * (raising it needs no privilege).
 */
function unprotectChildren(dir: string, options: MemoryGuardOptions): void {
  const processes = jailProcesses(dir);
  const spared = protectedPids(processes, options);
  for (const { hostPid } of processes) {
    if (spared.has(hostPid)) continue;
    try {
      if (readFileSync(`/proc/${hostPid}/oom_score_adj`, 'utf8').trim() === '-1000') writeFileSync(`/proc/${hostPid}/oom_score_adj`, '0');
    } catch {
      // Gone meanwhile.
    }
  }
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}
