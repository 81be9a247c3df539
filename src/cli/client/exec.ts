import { StringDecoder } from 'node:string_decoder';
import { BrigError, type EndEvent } from '../../protocol/index.ts';
import { parseArgs } from '../args.ts';
import type { Daemon } from './connection.ts';
import { EnvdFailure, exitCodeOf, openEnvd, type Envd } from './envd.ts';
import { stopOnSignals } from './remote-stop.ts';
import { write } from './output.ts';

export const EXEC_HELP = `Usage: brig exec [flags] NAME [--] <command> [args…]

Run a command in a running sandbox: its output streams as it comes, and its
exit code is brig's (128+N when signal N ended it). The command is run as
given, without a shell: \`brig exec box -- sh -c 'a | b'\` for pipes.

  -i, --interactive     pass your stdin to the command (otherwise it has none)
  -w, --workdir DIR     its working directory (default /home/user)
  -e, --env NAME=VALUE  set a variable in its environment (repeatable)
  --json                JSON lines instead: {"pid"}, {"stdout"} and {"stderr"}
                        (text), then {"exitCode","status"}

Ctrl-C, SIGTERM or SIGHUP end the command in the sandbox (SIGTERM, then
SIGKILL on the second or after 5 s), also one asked to stop before it started.
A sandbox that does not report the end 5 s after SIGKILL (frozen) ends brig
with BRIG_SANDBOX_UNRESPONSIVE. Flags come before NAME. For a terminal: brig shell.`;

const FLAGS = {
  interactive: { value: false, short: 'i' },
  workdir: { value: true, short: 'w' },
  env: { value: true, repeat: true, short: 'e' },
  json: { value: false },
  help: { value: false, short: 'h' },
};

export async function exec(daemon: Daemon, argv: string[]): Promise<number> {
  const { flags, rest } = parseArgs(argv, FLAGS, 'brig exec');
  const [name, ...after] = rest;
  const command = after[0] === '--' ? after.slice(1) : after;
  const [cmd, ...args] = command;
  if (name === undefined || cmd === undefined) throw new BrigError('BRIG_USAGE', 'brig exec needs a sandbox and a command', 'for example `brig exec box -- ls -la`');
  const envs: Record<string, string> = {};
  for (const entry of flags.get('env') ?? []) {
    const equals = entry.indexOf('=');
    if (equals <= 0) throw new BrigError('BRIG_USAGE', `--env ${entry}: expected NAME=VALUE`, 'the sandbox has its own environment: name the value to set');
    envs[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  const interactive = flags.has('interactive');
  const asJson = flags.has('json');

  const envd = await openEnvd(daemon, name);
  let pid: number | null = null;
  let end: EndEvent | null = null;
  const stop = stopOnSignals(envd, 'SIGNAL_SIGTERM', cmd);
  // EPIPE arrives as an event, after the write that caused it: kept here, thrown by the next write.
  // The listener stays: brig's own last flush of stdout must not crash on it either.
  let pipeError: Error | null = null;
  const onPipeError = (error: Error): void => void (pipeError ??= error);
  process.stdout.on('error', onPipeError);
  const emit = asJson ? jsonLines() : rawOutput();
  const out = async (data: Data): Promise<void> => {
    if (pipeError) throw pipeError;
    await emit(data);
  };
  try {
    const events = envd.start({ process: { cmd, args, envs, cwd: flags.get('workdir')?.[0] }, tag: stop.tag, stdin: interactive }, stop.abort);
    for await (const event of stop.events(events)) {
      if ('start' in event) {
        pid = event.start.pid;
        stop.started(pid);
        if (asJson) await write(process.stdout, JSON.stringify({ pid }) + '\n');
        if (interactive) void pumpStdin(envd, pid);
      } else if ('data' in event) {
        await out(event.data);
      } else if ('end' in event) {
        end = event.end;
      }
    }
  } catch (error) {
    if (isBrokenPipe(error)) {
      // Our reader went away (`brig exec box -- yes | head`): end the command too, as a shell pipeline would.
      if (pid !== null) await envd.unary('process.Process/SendSignal', { process: { pid }, signal: 'SIGNAL_SIGKILL' }).catch(() => {});
      return 128 + 13;
    }
    throw error instanceof EnvdFailure ? startFailure(error, cmd) : error;
  } finally {
    stop.dispose();
    if (interactive) process.stdin.destroy();
  }
  if (end === null) throw new BrigError('BRIG_INTERNAL', 'the command\'s stream ended without its exit status', 'this is a bug in brig; please report it');
  const code = exitCodeOf(end);
  if (asJson) await write(process.stdout, JSON.stringify({ exitCode: code, status: end.status }) + '\n');
  return code;
}

type Data = { stdout: string } | { stderr: string } | { pty: string };

/** Bytes as they came, to stdout and stderr. */
function rawOutput(): (data: Data) => Promise<void> {
  return async (data) => {
    if ('stderr' in data) await write(process.stderr, Buffer.from(data.stderr, 'base64'));
    else await write(process.stdout, Buffer.from('stdout' in data ? data.stdout : data.pty, 'base64'));
  };
}

/** One JSON object per chunk; a character split across chunks is kept for the next (a decoder per stream). */
function jsonLines(): (data: Data) => Promise<void> {
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  return async (data) => {
    const stream = 'stderr' in data ? 'stderr' : 'stdout';
    const text = decoders[stream].write(Buffer.from('stderr' in data ? data.stderr : 'stdout' in data ? data.stdout : data.pty, 'base64'));
    if (text) await write(process.stdout, JSON.stringify({ [stream]: text }) + '\n');
  };
}

/** Our stdin to the command's, a chunk at a time (each sent before the next is read), then closed. */
async function pumpStdin(envd: Envd, pid: number): Promise<void> {
  try {
    for await (const chunk of process.stdin) {
      await envd.unary('process.Process/SendInput', { process: { pid }, input: { stdin: (chunk as Buffer).toString('base64') } });
    }
    await envd.unary('process.Process/CloseStdin', { process: { pid } });
  } catch {
    // The command ended or closed its stdin: what is left of ours has nowhere to go.
  }
}

/** A program that cannot start is brig's 127 or 126, as in `brig run` and a shell. */
export function startFailure(error: EnvdFailure, cmd: string): BrigError {
  if (error.connectCode === 'invalid_argument' && /not found on PATH|no such file/.test(error.message)) {
    return new BrigError('BRIG_COMMAND_NOT_FOUND', `${cmd}: not found in the sandbox (${error.message})`, 'check its name and the sandbox\'s PATH, or give its absolute path');
  }
  if (error.connectCode === 'invalid_argument' && /permission denied|not executable|executable format/.test(error.message)) {
    return new BrigError('BRIG_COMMAND_NOT_EXECUTABLE', `${cmd}: cannot be executed in the sandbox (${error.message})`, '`chmod +x` it, or run it through its interpreter');
  }
  return error.toBrigError(`starting ${cmd}`);
}

function isBrokenPipe(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}
