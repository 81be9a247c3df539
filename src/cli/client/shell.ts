import { BrigError, type EndEvent, type ProcessEvent } from '../../protocol/index.ts';
import { parseArgs } from '../args.ts';
import type { Daemon } from './connection.ts';
import { EnvdFailure, exitCodeOf, openEnvd, type Envd } from './envd.ts';
import { startFailure } from './exec.ts';
import { stopOnSignals, type RemoteStop } from './remote-stop.ts';
import { write } from './output.ts';
import { inputSender, sendTerminalSize, terminalSize } from './pty-io.ts';

export const SHELL_HELP = `Usage: brig shell NAME [-- <command> [args…]]

A terminal in a running sandbox: an interactive login bash (sh when there is
no bash), or the command given, on a pseudo-terminal of its own. Keys go to it
as typed (Ctrl-C and Ctrl-D included), a resize of your window reaches it, and
brig exits with its exit code when it exits. Needs a terminal: for scripts,
use brig exec.`;

const FLAGS = { help: { value: false, short: 'h' } };

/** Tried in order when no command is given: bash where the sandbox has it. */
const SHELLS = [
  ['/bin/bash', '-i', '-l'],
  ['/bin/sh', '-i', '-l'],
];

export async function shell(daemon: Daemon, argv: string[]): Promise<number> {
  const { rest } = parseArgs(argv, FLAGS, 'brig shell');
  const [name, ...after] = rest;
  const command = after[0] === '--' ? after.slice(1) : after;
  if (name === undefined) throw new BrigError('BRIG_USAGE', 'brig shell needs a sandbox', 'for example `brig shell box`');
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    throw new BrigError('BRIG_USAGE', 'brig shell needs a terminal on stdin and stdout', 'run it from a terminal; for scripts use `brig exec NAME -- CMD`');
  }
  const envd = await openEnvd(daemon, name);
  const envs: Record<string, string> = { TERM: process.env.TERM || 'xterm-256color' };
  if (process.env.COLORTERM) envs.COLORTERM = process.env.COLORTERM;
  const candidates = command.length > 0 ? [command] : SHELLS;
  for (const [index, [cmd = '', ...args]] of candidates.entries()) {
    // Raw mode makes Ctrl-C a key, not a signal: a signal comes from elsewhere (a closed terminal, kill) and ends the session.
    const stop = stopOnSignals(envd, 'SIGNAL_SIGKILL', cmd);
    const events = stop.events(envd.start({ process: { cmd, args, envs }, pty: { size: terminalSize() }, tag: stop.tag }, stop.abort));
    let first: IteratorResult<ProcessEvent>;
    try {
      first = await events.next();
    } catch (error) {
      stop.dispose();
      if (!(error instanceof EnvdFailure)) throw error;
      const failure = startFailure(error, cmd);
      if (failure.code === 'BRIG_COMMAND_NOT_FOUND' && index < candidates.length - 1) continue;
      throw failure;
    }
    if (first.done || !('start' in first.value)) {
      stop.dispose();
      throw new BrigError('BRIG_INTERNAL', 'the terminal\'s stream did not begin with its process id', 'this is a bug in brig; please report it');
    }
    stop.started(first.value.start.pid);
    return attach(envd, first.value.start.pid, events, stop);
  }
  throw new BrigError('BRIG_COMMAND_NOT_FOUND', 'the sandbox has no shell', 'give a command: `brig shell NAME -- PROGRAM`');
}

/** The terminal in raw mode, wired to the process until it ends; the terminal is put back whatever happens. */
async function attach(envd: Envd, pid: number, events: AsyncGenerator<ProcessEvent>, stop: RemoteStop): Promise<number> {
  const send = inputSender(envd, pid);
  const onResize = (): void => void sendTerminalSize(envd, pid);
  process.stdin.setRawMode(true);
  process.stdin.on('data', send);
  process.stdin.resume();
  process.stdout.on('resize', onResize);
  let end: EndEvent | null = null;
  try {
    for await (const event of events) {
      if ('data' in event && 'pty' in event.data) await write(process.stdout, Buffer.from(event.data.pty, 'base64'));
      else if ('end' in event) end = event.end;
    }
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.off('data', send);
    process.stdin.pause();
    process.stdout.off('resize', onResize);
    stop.dispose();
  }
  if (end === null) throw new BrigError('BRIG_INTERNAL', 'the terminal\'s stream ended without its exit status', 'this is a bug in brig; please report it');
  return exitCodeOf(end);
}
