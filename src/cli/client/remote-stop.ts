import { randomUUID } from 'node:crypto';
import { BrigError, type ProcessSelector } from '../../protocol/index.ts';
import type { Envd } from './envd.ts';

/**
 * A client command (exec, shell) ends when it is asked to, and takes its
 * remote process with it, whatever state the sandbox is in.
 *
 * - The process carries a tag chosen here, before the start request leaves:
 *   a signal that comes before envd has told us the pid is sent by tag, and
 *   again by pid once the pid arrives, so no window lets the client go and
 *   the command run on.
 * - The wait after a signal is bounded: a process that ignores SIGTERM gets
 *   SIGKILL after GRACE_MS, and a sandbox that answers nothing (frozen, envd
 *   hung) ends the client UNRESPONSIVE_MS later with
 *   BRIG_SANDBOX_UNRESPONSIVE, its start request aborted (envd does not start
 *   a process whose caller has left).
 */

/** How long a process asked to stop with SIGTERM has before SIGKILL. */
export const GRACE_MS = 5000;
/** How long after SIGKILL a sandbox has to report the end before the client gives up on it. */
export const UNRESPONSIVE_MS = 5000;

type RemoteSignal = 'SIGNAL_SIGTERM' | 'SIGNAL_SIGKILL';

export interface RemoteStop {
  /** The tag to give the start request. */
  readonly tag: string;
  /** Aborts the start request when the sandbox is given up on. */
  readonly abort: AbortSignal;
  /** envd said the pid: later signals go to it, and one that came before is sent again. */
  started(pid: number): void;
  /** Each event of the stream, until the stream ends or the sandbox is given up on (then it throws BRIG_SANDBOX_UNRESPONSIVE). */
  events<T>(stream: AsyncGenerator<T>): AsyncGenerator<T>;
  /** Stop listening for signals. */
  dispose(): void;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Installs the handlers now, before the start request is sent: `first` is what the first signal sends. */
export function stopOnSignals(envd: Envd, first: RemoteSignal, what: string): RemoteStop {
  const tag = `brig-${randomUUID()}`;
  const controller = new AbortController();
  let pid: number | null = null;
  let sent: RemoteSignal | null = null;
  let escalation: NodeJS.Timeout | null = null;
  let giveUp: NodeJS.Timeout | null = null;
  let fail: (error: BrigError) => void = () => {};
  const failed = new Promise<never>((_, reject) => (fail = reject));
  // Nobody may be awaiting it when it fails (between two events): never an unhandled rejection.
  failed.catch(() => {});

  const send = (signal: RemoteSignal): void => {
    sent = signal;
    const target: ProcessSelector = pid === null ? { tag } : { pid };
    // Not awaited: a frozen sandbox never answers, and the bounded wait below must run regardless.
    void envd.unary('process.Process/SendSignal', { process: target, signal }).catch(() => {});
  };
  const kill = (): void => {
    if (escalation) clearTimeout(escalation);
    send('SIGNAL_SIGKILL');
    giveUp ??= setTimeout(() => {
      controller.abort();
      fail(
        new BrigError(
          'BRIG_SANDBOX_UNRESPONSIVE',
          `sandbox ${envd.id} did not end ${what} within ${(GRACE_MS + UNRESPONSIVE_MS) / 1000} s of being asked to (it may be frozen, or its envd hung)`,
          '`brig info` and `brig logs` show its state; `brig stop` ends it, and the command with it',
        ),
      );
    }, UNRESPONSIVE_MS);
  };
  const onSignal = (): void => {
    if (sent === null && first === 'SIGNAL_SIGTERM') {
      send('SIGNAL_SIGTERM');
      escalation = setTimeout(kill, GRACE_MS);
    } else kill();
  };
  for (const name of SIGNALS) process.on(name, onSignal);

  return {
    tag,
    abort: controller.signal,
    started(known) {
      pid = known;
      if (sent !== null) send(sent);
    },
    async *events<T>(stream: AsyncGenerator<T>): AsyncGenerator<T> {
      for (;;) {
        const next = await Promise.race([stream.next(), failed]);
        if (next.done) return;
        yield next.value;
      }
    },
    dispose() {
      for (const name of SIGNALS) process.off(name, onSignal);
      if (escalation) clearTimeout(escalation);
      if (giveUp) clearTimeout(giveUp);
    },
  };
}
