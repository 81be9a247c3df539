import { statSync, type Stats } from 'node:fs';
import { ConnectError, SERVICE } from '../../protocol/index.ts';
import type { Message, RpcContext, StreamWriter } from '../rpc.ts';
import type { EnvdServer } from '../server.ts';
import { userPath } from '../users.ts';
import { Subscriber } from './output.ts';
import { spawnPty } from './pty.ts';
import { parseInput, parsePtySize, parseSelector, parseSignal, parseStart } from './requests.ts';
import { RunningProcess } from './running.ts';
import { spawnPiped } from './spawn.ts';
import { ProcessTable } from './table.ts';

/**
 * process.Process: start programs (on pipes or a terminal), stream their
 * output to any number of clients, take their input, signal them. A program
 * outlives the client that started it; its lifetime is the Start call's
 * Connect-Timeout-Ms, and envd closing kills everything it started.
 */

const KEEPALIVE = { event: { keepalive: {} } };

export function registerProcess(server: Pick<EnvdServer, 'serverStream' | 'unary' | 'clientStream' | 'onClose'>): void {
  const table = new ProcessTable();
  const procedure = (name: string): string => `${SERVICE.process}/${name}`;

  server.serverStream(procedure('Start'), (message, context, writer) => start(table, message, context, writer), KEEPALIVE);

  server.serverStream(
    procedure('Connect'),
    async (message, context, writer) => {
      const target = table.find(parseSelector(message.process));
      const subscriber = new Subscriber(writer, context.signal);
      target.attach(subscriber);
      await subscriber.done;
    },
    KEEPALIVE,
  );

  server.unary(procedure('List'), async () => ({ processes: table.list() }));

  server.unary(procedure('SendInput'), async (message) => {
    const selector = parseSelector(message.process);
    const input = parseInput(message.input);
    await table.find(selector).child.write(input.kind, input.data);
    return {};
  });

  // The JS SDK does not use it; E2B's envd reads `start` (the selector), then `data` (input) and `keepalive` messages.
  server.clientStream(procedure('StreamInput'), async (messages) => {
    let target: RunningProcess | null = null;
    for await (const message of messages) {
      if (message.start !== undefined) {
        const start = message.start as Message | null;
        target = table.find(parseSelector(start?.process, 'start.process'));
      } else if (message.data !== undefined) {
        if (!target) throw new ConnectError('failed_precondition', 'StreamInput sent data before a start message naming the process');
        const input = parseInput((message.data as Message | null)?.input, 'data.input');
        await target.child.write(input.kind, input.data);
      } else if (message.keepalive === undefined) {
        throw new ConnectError('invalid_argument', 'a StreamInput message must have start, data or keepalive');
      }
    }
    return {};
  });

  server.unary(procedure('SendSignal'), async (message) => {
    const selector = parseSelector(message.process);
    const signal = parseSignal(message.signal);
    table.find(selector).signal(signal);
    return {};
  });

  server.unary(procedure('CloseStdin'), async (message) => {
    table.find(parseSelector(message.process)).child.closeStdin();
    return {};
  });

  server.unary(procedure('Update'), async (message) => {
    const selector = parseSelector(message.process);
    const pty = message.pty === undefined || message.pty === null ? null : parsePtySize((message.pty as Message).size, 'pty.size');
    const target = table.find(selector);
    if (pty) target.child.resize(pty);
    return {};
  });

  server.onClose(() => table.killAll());
}

async function start(table: ProcessTable, message: Message, context: RpcContext, writer: StreamWriter): Promise<void> {
  const request = parseStart(message);
  const cwd = userPath(context.user, request.config.cwd || context.workdir || '', 'process.cwd');
  // A local stat takes microseconds; a trip through the thread pool would cost more than the call.
  const directory = statOrNull(cwd);
  if (!directory?.isDirectory()) throw new ConnectError('invalid_argument', `cwd '${cwd}' does not exist or is not a directory`);

  // envd's own environment (the sandbox's), then the caller's variables.
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) env[name] = value;
  // A call as another user than envd's (root in an image sandbox) gets that user's own variables.
  const as = context.user.uid === process.getuid?.() ? undefined : { uid: context.user.uid, gid: context.user.gid };
  if (as) Object.assign(env, { HOME: context.user.home, USER: context.user.name, LOGNAME: context.user.name });
  Object.assign(env, request.config.envs);

  // A caller that left before its process started never learnt the pid (a client
  // stopped by a signal while the request was on its way, or queued in a frozen
  // sandbox): nothing is started for nobody.
  const callerLeft = (): boolean => context.signal.aborted || context.request.socket.destroyed;
  if (callerLeft()) throw new ConnectError('canceled', 'the caller left before the process started');
  const spawnOptions = { cmd: request.config.cmd, args: request.config.args, cwd, env, as };
  const child = request.pty ? await spawnPty({ ...spawnOptions, size: request.pty }) : await spawnPiped({ ...spawnOptions, stdin: request.stdin });
  const running = new RunningProcess(child, { config: { ...request.config, cwd }, tag: request.tag }, (ended) => table.remove(ended));
  table.add(running);
  // It left while the spawn was under way: undone at once, for the same reason.
  if (callerLeft()) running.signal('SIGKILL');

  // The process outlives this call: a client going away only detaches it.
  const subscriber = new Subscriber(writer, context.signal);
  running.attach(subscriber);
  running.run(context.timeoutMs);
  await subscriber.done;
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}
