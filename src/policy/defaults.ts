import type { Policy } from './types.ts';

/**
 * The default policy denies: no home, no credentials, no network, no inherited
 * environment beyond a short safe list, limits on. Every widening is a change
 * a user makes on purpose. Limits follow seed 004 (memory 2 GiB, 2 CPUs,
 * nofile 1024/1024, nproc 512/512, pids 512: one jail holds at most 512 Ki
 * open files, where 1024 tasks × 2048 allowed 2 Mi).
 */
export const DEFAULT_POLICY: Policy = deepFreeze({
  name: 'default',
  description: 'The project directory read-write, system directories read-only, a private home and /tmp, no network.',
  image: null,
  tier: null,
  filesystem: {
    workspace: '.',
    workspaceTarget: null,
    home: null,
    // Programs and libraries; /etc for resolver, locale, certificates (its secrets are always masked).
    system: ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc'],
    readOnly: [],
    readWrite: [],
    tmpfs: ['/tmp', '/var/tmp'],
    hidden: [],
    tmpfsSizeMiB: 1024,
  },
  tools: [],
  environment: {
    // What a terminal program needs to behave; nothing that can hold a secret.
    forward: ['PATH', 'TERM', 'COLORTERM', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES', 'TZ', 'NO_COLOR', 'FORCE_COLOR'],
    set: {},
  },
  network: { mode: 'none', allow: [], deny: [], llm: [], budget: { requests: 0, tokens: 0 }, publish: 'loopback' },
  identity: { uid: null, gid: null, hostname: 'brig', user: null, home: null },
  resources: {
    memoryMiB: 2048,
    onOutOfMemory: 'kill-process',
    cpus: 2,
    pids: 512,
    openFiles: { soft: 1024, hard: 1024 },
    processes: { soft: 512, hard: 512 },
    maxFileSizeMiB: 16384,
    diskMiB: null,
  },
  syscalls: { extraDeny: [], logOnly: false },
  timeouts: { runMs: 0, hungMs: 600_000, onHung: 'flag' },
});

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
