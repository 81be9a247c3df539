/**
 * A decision brig made when a jail used all of its memory
 * (resources.onOutOfMemory; docs/jail.md, "Out of memory"): recorded by the
 * jail driver, kept by the daemon (GET /v1/sandboxes/:id/memory-events),
 * shown by brig info and at the end of brig run and brig agent.
 */
export interface MemoryEvent {
  /** RFC 3339. */
  time: string;
  /** kill-process: one process was killed and the jail lived on; kill-sandbox: the whole jail was killed. */
  action: 'kill-process' | 'kill-sandbox';
  /** The killed process's pid inside the jail; null when the whole jail went, or the kernel chose (cgroup v2). */
  pid: number | null;
  /** The same process's pid on the host. */
  hostPid: number | null;
  /** Its name (the kernel's comm: at most 15 characters, non-printable ones as ?). Chosen by the jail: never trust it. */
  command: string | null;
  /** Its resident memory when it was chosen, in bytes. */
  rssBytes: number | null;
  /** It was the jail's main process: the command brig run started (envd and brig agent's agent are never chosen). */
  main: boolean;
  /** Why, for people. */
  reason: string;
}

/** One line for people: "killed python3 (pid 7 inside, 58.1 MiB resident)". */
export function describeMemoryEvent(event: MemoryEvent): string {
  if (event.action === 'kill-sandbox') return `the whole sandbox was killed: ${event.reason}`;
  if (event.pid === null) return event.reason;
  const rss = event.rssBytes === null ? '' : `, ${(event.rssBytes / 1048576).toFixed(1)} MiB resident`;
  return `killed ${event.command ?? '?'} (pid ${event.pid} inside${rss}), the largest process at the limit${event.main ? ': the command itself' : '; the rest went on'}`;
}
