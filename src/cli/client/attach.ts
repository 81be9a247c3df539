import { BrigError, MONITOR_TAG, type EndEvent, type ProcessEvent, type ProcessInfo } from '../../protocol/index.ts';
import type { Daemon } from './connection.ts';
import { EnvdFailure, exitCodeOf, openEnvd, type Envd } from './envd.ts';
import { operandsOf, parseMixed, write } from './output.ts';
import { inputSender, sendTerminalSize } from './pty-io.ts';

export const ATTACH_HELP = `Usage: brig attach [--watch] [--pid PID] NAME

Attach your terminal to one running in a sandbox, as dtach does: by default
its monitor shell (brig create --monitor-port: the lines sent to that port
run there), or the terminal of process PID (a brig shell, the SDK's pty), or
else the only terminal running. Its output from now on is shown as it
comes; what you type goes to it (raw, Ctrl-C included) and it takes your
window's size, at once and on each resize. Any number of people may be
attached to one terminal at once.

Ctrl-\\ detaches and leaves it running; so does a signal to brig (SIGINT,
SIGTERM, SIGHUP). brig exits 0 on a detach, and with the process's exit
code when it ends.

  --watch     read-only: nothing is sent to it, neither keys nor your
              window's size; Ctrl-C detaches too
  --pid PID   the terminal of that process (brig attach names them when it
              cannot choose)`;

const FLAGS = {
  watch: { value: false },
  pid: { value: true },
  help: { value: false, short: 'h' },
};

/** Ctrl-\: dtach's detach key. */
const DETACH_KEY = 0x1c;
const CTRL_C = 0x03;
const DETACH_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export async function attach(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig attach');
  const [name = ''] = operandsOf(parsed, ['NAME'], 'brig attach');
  const watch = parsed.flags.has('watch');
  const pidText = parsed.flags.get('pid')?.[0];
  if (pidText !== undefined && !/^[1-9]\d{0,9}$/.test(pidText)) throw new BrigError('BRIG_USAGE', `--pid ${pidText}: expected a process id`, 'brig attach NAME without --pid names the terminals running');
  const envd = await openEnvd(daemon, name);
  const target = await chooseTerminal(envd, name, pidText === undefined ? null : Number(pidText));

  const stream = new AbortController();
  const events = envd.connect({ pid: target.pid }, stream.signal);
  const first = await events.next().catch((error: unknown) => {
    // It ended between the list and now.
    if (error instanceof EnvdFailure && error.connectCode === 'not_found') throw new BrigError('BRIG_USAGE', `${target.what} in ${name} has ended`, '`brig attach NAME` names the terminals running now');
    throw error instanceof EnvdFailure ? error.toBrigError(`attaching to ${target.what}`) : error;
  });
  if (first.done || !('start' in first.value)) throw new BrigError('BRIG_INTERNAL', 'the terminal\'s stream did not begin with its process id', 'this is a bug in brig; please report it');
  return follow(envd, target.pid, events, stream, watch, `brig: attached to ${target.what} in ${name}${watch ? ', read-only' : ''}; Ctrl-\\ detaches\n`);
}

/** The monitor shell; else the one terminal; else an error naming them. */
async function chooseTerminal(envd: Envd, name: string, pid: number | null): Promise<{ pid: number; what: string }> {
  const processes = (await envd.unary<{ processes?: ProcessInfo[] }>('process.Process/List', {}).catch((error: unknown) => {
    throw error instanceof EnvdFailure ? error.toBrigError('listing its processes') : error;
  })).processes ?? [];
  const terminals = processes.filter((process) => process.pty === true);
  const listing = terminals.length === 0 ? 'none runs' : terminals.map(describe).join('; ');
  if (pid !== null) {
    const found = processes.find((process) => process.pid === pid);
    if (!found) throw new BrigError('BRIG_USAGE', `no process ${pid} runs in ${name}`, `its terminals: ${listing}`);
    if (found.pty !== true) throw new BrigError('BRIG_USAGE', `process ${pid} (${commandOf(found)}) runs on pipes, not a terminal: there is no screen to attach to`, `its terminals: ${listing}`);
    return { pid, what: found.tag === MONITOR_TAG ? `the monitor shell (pid ${pid})` : `pid ${pid} (${commandOf(found)})` };
  }
  const monitor = terminals.find((process) => process.tag === MONITOR_TAG);
  if (monitor) return { pid: monitor.pid, what: `the monitor shell (pid ${monitor.pid})` };
  const [only, ...others] = terminals;
  if (only && others.length === 0) return { pid: only.pid, what: `pid ${only.pid} (${commandOf(only)})` };
  if (!only) throw new BrigError('BRIG_USAGE', `${name} has no monitor shell and no terminal running`, 'create a sandbox with --monitor-port for one, or open a terminal with `brig shell NAME`');
  throw new BrigError('BRIG_USAGE', `${name} has no monitor shell and ${terminals.length} terminals: ${listing}`, 'name one: brig attach --pid PID NAME');
}

function describe(process: ProcessInfo): string {
  return `pid ${process.pid} (${commandOf(process)})`;
}

function commandOf(process: ProcessInfo): string {
  const command = [process.config.cmd, ...(process.config.args ?? [])].join(' ');
  return command.length > 60 ? `${command.slice(0, 57)}...` : command;
}

/** Its output to stdout until it ends or the caller detaches; keys and size to it unless watching. The caller's terminal is put back whatever happens. */
async function follow(envd: Envd, pid: number, events: AsyncGenerator<ProcessEvent>, stream: AbortController, watch: boolean, attached: string): Promise<number> {
  let detach!: () => void;
  const detached = new Promise<'detached'>((resolve) => (detach = () => resolve('detached')));
  const send = watch ? null : inputSender(envd, pid);
  const onInput = (chunk: Buffer): void => {
    const key = chunk.findIndex((byte) => byte === DETACH_KEY || (watch && byte === CTRL_C));
    if (key === -1) return send?.(chunk);
    if (key > 0) send?.(chunk.subarray(0, key));
    detach();
  };
  const onResize = (): void => void sendTerminalSize(envd, pid);
  const tty = process.stdin.isTTY === true;
  // Raw, so Ctrl-\ and Ctrl-C arrive as keys (and, typing, every key goes as it is).
  if (tty) process.stdin.setRawMode(true);
  process.stdin.on('data', onInput);
  process.stdin.resume();
  for (const signal of DETACH_SIGNALS) process.on(signal, detach);
  if (!watch && process.stdout.isTTY) {
    void sendTerminalSize(envd, pid);
    process.stdout.on('resize', onResize);
  }
  // Said once a signal would detach: from this line on, it does.
  process.stderr.write(attached);
  // A reader that went away (`brig attach box --watch | head`) is a detach; the listener stays for brig's own last flush.
  const onPipeError = (): void => detach();
  process.stdout.on('error', onPipeError);
  let end: EndEvent | null = null;
  try {
    for (;;) {
      const next = events.next();
      // Detaching aborts the stream: its last read fails, and nobody waits for it.
      next.catch(() => {});
      const got = await Promise.race([next, detached]);
      if (got === 'detached' || got.done) break;
      const event = got.value;
      if ('data' in event && 'pty' in event.data) {
        const written = write(process.stdout, Buffer.from(event.data.pty, 'base64')).catch(() => 'detached' as const);
        if ((await Promise.race([written, detached])) === 'detached') break;
      } else if ('end' in event) end = event.end;
    }
  } finally {
    stream.abort();
    if (tty) process.stdin.setRawMode(false);
    process.stdin.off('data', onInput);
    process.stdin.pause();
    for (const signal of DETACH_SIGNALS) process.off(signal, detach);
    process.stdout.off('resize', onResize);
  }
  if (end === null) {
    process.stderr.write('\r\nbrig: detached; it runs on\n');
    return 0;
  }
  process.stderr.write(`\r\nbrig: it ended (${end.status})\n`);
  return exitCodeOf(end);
}
