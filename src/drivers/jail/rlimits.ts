import type { ResourcesPolicy } from '../../policy/index.ts';

/**
 * Per-process limits, set by util-linux's prlimit just before it executes
 * bubblewrap, so they hold from the jail's first instruction (Node cannot call
 * setrlimit itself). No core dumps: a crash must not write memory to disk.
 */
export function rlimitArgs(resources: ResourcesPolicy): string[] {
  const fileSizeBytes = resources.maxFileSizeMiB * 1024 * 1024;
  return [
    `--nofile=${resources.openFiles.soft}:${resources.openFiles.hard}`,
    `--nproc=${resources.processes.soft}:${resources.processes.hard}`,
    '--core=0:0',
    `--fsize=${fileSizeBytes}:${fileSizeBytes}`,
  ];
}
