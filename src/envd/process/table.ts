import { ConnectError, type ProcessInfo } from '../../protocol/index.ts';
import type { Selector } from './requests.ts';
import type { RunningProcess } from './running.ts';
import { sessionGroups, signalSession } from './signals.ts';

/**
 * The processes envd started and has not yet sent the `end` of, by pid; and
 * the sessions of ended ones that a descendant may still hold (`server &`),
 * so that closing envd kills those too.
 */
export class ProcessTable {
  private readonly byPid = new Map<number, RunningProcess>();
  private readonly lingeringSessions = new Set<number>();
  private pruneAt = 64;

  add(process: RunningProcess): void {
    this.lingeringSessions.delete(process.pid);
    this.byPid.set(process.pid, process);
  }

  /**
   * The process has ended; its session may live on in a descendant. Which
   * ones do is only worked out (a scan of /proc) when the list grows long,
   * not on every exit.
   */
  remove(process: RunningProcess): void {
    if (this.byPid.get(process.pid) === process) this.byPid.delete(process.pid);
    this.lingeringSessions.add(process.pid);
    if (this.lingeringSessions.size > this.pruneAt) {
      const alive = sessionGroups();
      for (const sid of this.lingeringSessions) if (!alive.has(sid)) this.lingeringSessions.delete(sid);
      this.pruneAt = Math.max(64, 2 * this.lingeringSessions.size);
    }
  }

  find(selector: Selector): RunningProcess {
    if ('pid' in selector) {
      const process = this.byPid.get(selector.pid);
      if (!process) throw new ConnectError('not_found', `process with pid ${selector.pid} not found`);
      return process;
    }
    for (const process of this.byPid.values()) if (process.record.tag === selector.tag) return process;
    throw new ConnectError('not_found', `process with tag ${selector.tag} not found`);
  }

  /** The programs still running (not those whose exit is being drained). */
  list(): ProcessInfo[] {
    return [...this.byPid.values()].filter((process) => process.running).map((process) => process.info);
  }

  /** envd is closing: SIGKILL everything it started. */
  killAll(): void {
    const groups = sessionGroups();
    for (const sid of this.byPid.keys()) signalSession(sid, 'SIGKILL', groups);
    for (const sid of this.lingeringSessions) if (groups.has(sid)) signalSession(sid, 'SIGKILL', groups);
    this.lingeringSessions.clear();
  }
}
