import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { BrigError } from '../../protocol/index.ts';
import type { Policy } from '../../policy/index.ts';

/**
 * The daemon's budgets: what all its booted sandboxes (the warm pool's
 * included) may commit together. Each sandbox commits what its policy lets
 * it take at most, not what it uses now: a create that would pass a budget
 * is refused (503 BRIG_CAPACITY, naming the budget) rather than letting ten
 * sandboxes that each keep to their limits starve the host together.
 */

export interface Budgets {
  /** Sandboxes booted at once. */
  sandboxes: number;
  /** Tasks: the sum of resources.pids (each sandbox's cgroup pids.max). */
  tasks: number;
  /** Open files: the sum of resources.pids × resources.openFiles.hard, the most each sandbox can hold open. */
  openFiles: number;
  /** Memory: the sum of resources.memoryMiB (each sandbox's cgroup limit), in MiB. */
  memoryMiB: number;
}

/** What one sandbox commits against each budget. */
export function commitment(policy: Policy): Budgets {
  const { pids, openFiles, memoryMiB } = policy.resources;
  return { sandboxes: 1, tasks: pids, openFiles: pids * openFiles.hard, memoryMiB };
}

const DEFAULT_MAX_SANDBOXES = 100;
/**
 * Open files: the host's table (fs.file-max) may be committed this many
 * times over. A sandbox at the default policy could hold 512 Ki files (512
 * tasks × 1024), which would cost it far more kernel memory than real work
 * does; the root daemon itself may pass fs.file-max, unprivileged host
 * processes may not.
 */
const OPEN_FILES_OVERCOMMIT = 8;
/** Memory: cgroup limits are ceilings, not reservations; the sum of them may pass RAM this many times over. */
const MEMORY_OVERCOMMIT = 2;

/**
 * Defaults from the host: tasks take at most half of what the kernel allows
 * (pid_max, threads-max), leaving the rest to the host; memory and open
 * files overcommit by the factors above (--max-memory-mib set to the host's
 * RAM never overcommits).
 */
export function defaultBudgets(): Budgets {
  const kernelTasks = Math.min(readNumber('/proc/sys/kernel/pid_max', 32768), readNumber('/proc/sys/kernel/threads-max', 32768));
  return {
    sandboxes: DEFAULT_MAX_SANDBOXES,
    tasks: Math.floor(kernelTasks / 2),
    openFiles: readNumber('/proc/sys/fs/file-max', 1_048_576) * OPEN_FILES_OVERCOMMIT,
    memoryMiB: Math.floor(totalmem() / 1024 / 1024) * MEMORY_OVERCOMMIT,
  };
}

const WHAT: Record<keyof Budgets, { name: string; flag: string; unit: string }> = {
  sandboxes: { name: 'sandboxes', flag: '--max-sandboxes', unit: 'sandboxes' },
  tasks: { name: 'tasks (resources.pids)', flag: '--max-tasks', unit: 'tasks' },
  openFiles: { name: 'open files (resources.pids × openFiles.hard)', flag: '--max-open-files', unit: 'files' },
  memoryMiB: { name: 'memory (resources.memoryMiB)', flag: '--max-memory-mib', unit: 'MiB' },
};

/** Throws BRIG_CAPACITY when adding `wanted` to what `booted` commit would pass a budget. */
export function checkBudgets(budgets: Budgets, booted: readonly Policy[], wanted: Policy): void {
  const used: Budgets = { sandboxes: 0, tasks: 0, openFiles: 0, memoryMiB: 0 };
  for (const policy of booted) {
    const each = commitment(policy);
    for (const key of Object.keys(used) as Array<keyof Budgets>) used[key] += each[key];
  }
  const asked = commitment(wanted);
  for (const key of Object.keys(used) as Array<keyof Budgets>) {
    if (used[key] + asked[key] <= budgets[key]) continue;
    const { name, flag, unit } = WHAT[key];
    throw new BrigError(
      'BRIG_CAPACITY',
      `the daemon's budget of ${name} is full: its sandboxes commit ${used[key]} of ${budgets[key]} ${unit}, this one asks for ${asked[key]}`,
      `kill sandboxes you no longer need, ask for less (the policy's resources), or raise the budget: brig serve ${flag}`,
    );
  }
}

function readNumber(file: string, fallback: number): number {
  try {
    const value = Number(readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(value) && value > 0 ? value : fallback;
  } catch {
    return fallback;
  }
}
