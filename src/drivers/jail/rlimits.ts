import type { ResourcesPolicy } from '../../policy/index.ts';

/**
 * Per-process limits, set by brig-exec (native/spawn/exec.c) just before it
 * executes bubblewrap, so they hold from the jail's first instruction (Node
 * cannot call setrlimit itself). No core dumps: a crash must not write memory
 * to disk.
 */
export function rlimitArgs(resources: ResourcesPolicy): string[] {
  const fileSizeBytes = resources.maxFileSizeMiB * 1024 * 1024;
  return [
    '--rlimit', `NOFILE=${resources.openFiles.soft}:${resources.openFiles.hard}`,
    '--rlimit', `NPROC=${resources.processes.soft}:${resources.processes.hard}`,
    '--rlimit', 'CORE=0:0',
    '--rlimit', `FSIZE=${fileSizeBytes}:${fileSizeBytes}`,
  ];
}
