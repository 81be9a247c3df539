import type { Socket } from 'node:net';
import type { EnvdClient } from '../sandboxes/index.ts';
import type { CommandRecorder } from '../timeline/index.ts';
import { PtyShell } from './shell.ts';

/**
 * Seed 000's agent port: each TCP connection gets a fresh interactive
 * login shell in the sandbox, on a terminal of its own; what the shell
 * writes goes back over the connection, what the connection sends is typed
 * into the shell. The connection is the shell's life: when the client
 * closes its side, the shell is killed; when the shell ends, so does the
 * connection.
 *
 * A program reads what comes back, so the terminal echoes nothing: the
 * kernel's echo is turned off before the login shell starts, and bash reads
 * lines without readline (which echoes by itself). And what the client
 * sends before the shell is ready would be echoed by the terminal while
 * its echo was still on, so it is held back until the shell's first output
 * (its prompt: stty has run by then), or HOLD_MS.
 */

export const AGENT_SHELL = ['/bin/bash', '-c', 'stty -echo 2>/dev/null; exec /bin/bash --noediting -li'];
/** Tags of agent-port shells start so: a restarted daemon kills the ones an earlier one left (their connections died with it). */
export const AGENT_TAG_PREFIX = 'brig-agent-port-';
/** The longest the client's first bytes wait for the shell's first output. */
const HOLD_MS = 2000;

export interface AgentSession {
  /** The client is cut and the shell killed (the sandbox ends, the daemon closes). */
  close(): void;
}

export function serveAgentConnection(socket: Socket, context: { sandbox: string; envd: EnvdClient; tag: string; recorder?: CommandRecorder }): AgentSession {
  const shell = new PtyShell({ sandbox: context.sandbox, envd: context.envd, via: 'agent-port', recorder: context.recorder });
  let started = false;
  let spoke = false;
  let held = true;
  let sending = false;
  let over = false;
  const flowIfReady = (): void => {
    if (started && spoke && held) {
      held = false;
      if (!sending) socket.resume();
    }
  };
  const holdTimer = setTimeout(() => {
    spoke = true;
    flowIfReady();
  }, HOLD_MS);
  holdTimer.unref();

  // One chunk in flight at a time: the connection is paused until envd took it, so a flooding client fills its own socket, not the daemon.
  socket.on('data', (chunk: Buffer) => {
    if (over) return;
    sending = true;
    socket.pause();
    void shell.write(chunk).then(() => {
      sending = false;
      if (!held && !socket.destroyed) socket.resume();
    });
  });
  // The client is done (it closed its side, or it is gone): so is the shell.
  const clientLeft = (): void => {
    clearTimeout(holdTimer);
    if (over) return;
    over = true;
    shell.kill();
    if (!socket.destroyed) socket.end();
  };
  socket.once('end', clientLeft);
  socket.once('close', clientLeft);
  // The shell is done: the connection ends once what it wrote is sent, and whatever the client still sends is read and dropped.
  const shellEnded = (last?: string): void => {
    clearTimeout(holdTimer);
    over = true;
    if (socket.destroyed) return;
    if (last === undefined) socket.end();
    else socket.end(last);
    socket.resume();
  };

  const output = async (chunk: Buffer): Promise<void> => {
    if (!spoke) {
      spoke = true;
      flowIfReady();
    }
    if (socket.destroyed || socket.writableEnded) return;
    // A client that reads slowly holds the shell's output back in envd, not here.
    if (!socket.write(chunk)) await drained(socket);
  };
  shell
    .start(AGENT_SHELL, context.tag, { TERM: 'dumb' }, {
      started: () => {
        started = true;
        flowIfReady();
      },
      output,
    })
    .then(
      () => shellEnded(),
      (error: Error) => shellEnded(`brig: cannot start a shell in sandbox ${context.sandbox}: ${error.message}\r\n`),
    );

  return {
    close() {
      over = true;
      clearTimeout(holdTimer);
      shell.kill();
      socket.destroy();
    },
  };
}

/** Resolves when the socket can take more, or is gone. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
