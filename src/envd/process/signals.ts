import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { goSignalStatus, type EndEvent } from '../../protocol/index.ts';

/**
 * Exit statuses as E2B's envd reports them: Go's ProcessState.String(), so
 * code that matches on "exit status 1" or "signal: killed" keeps working.
 */


/** How a process ended: an exit code, or the signal that ended it. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The `end` event for an exit: exitCode -1 and exited false when a signal ended it, and `error` unless it exited 0. */
export function endEvent(exit: ExitInfo): EndEvent {
  if (exit.signal !== null || exit.code === null) {
    const signal = exit.signal ?? 'SIGKILL';
    const status = goSignalStatus(signal);
    return { exitCode: -1, exited: false, status, error: status };
  }
  const status = `exit status ${exit.code}`;
  return exit.code === 0 ? { exitCode: 0, exited: true, status } : { exitCode: exit.code, exited: true, status, error: status };
}

/** A signal number (as node-pty reports it) as its name; null for 0 or an unknown number. */
export function signalFromNumber(value: number | undefined): NodeJS.Signals | null {
  if (!value) return null;
  for (const [name, number] of Object.entries(constants.signals)) if (number === value) return name as NodeJS.Signals;
  return null;
}

/**
 * The process groups of each session alive now, from /proc. Every program
 * envd starts leads a session of its own (setsid, on pipes or on a terminal),
 * and a shell with job control puts each job in a group of its own inside
 * that session: signalling the session's groups reaches them all. A session
 * id stays reserved while any process is in the session, so it cannot name
 * someone else's meanwhile. Only a descendant that calls setsid itself
 * escapes (the jail's teardown still ends it).
 */
export function sessionGroups(): Map<number, Set<number>> {
  const sessions = new Map<number, Set<number>>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return sessions;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp session …": comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    const session = Number(fields[3]);
    if (!sessions.has(session)) sessions.set(session, new Set());
    sessions.get(session)?.add(pgrp);
  }
  return sessions;
}

/** Signal every group of the session `sid` leads; false when nothing of it is left. */
export function signalSession(sid: number, signal: NodeJS.Signals, groups = sessionGroups()): boolean {
  let reached = signalGroup(sid, signal);
  for (const pgid of groups.get(sid) ?? []) if (pgid !== sid) reached = signalGroup(pgid, signal) || reached;
  return reached;
}

/** Signal one process group (never -1, everyone, nor 0, our own); false when it is gone. */
function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}
