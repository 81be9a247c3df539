import type { MemoryEvent } from '../protocol/index.ts';
import type { Driver, RunEnd, RunIo, SandboxPlan } from '../drivers/index.ts';
import { openTerminal, type Terminal } from './terminal.ts';

/** The caller's signals that end the sandbox; the run's end names the one that did. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

export interface ForegroundOptions {
  protectMain: boolean;
  onMemoryEvent: (event: MemoryEvent) => void;
  /** The command's stdout and stderr, instead of brig's own (stdin is then /dev/null). */
  output?: (chunk: Buffer) => void;
  /** Ends the sandbox as a SIGTERM to brig would (a build stopped by its caller). */
  signal?: AbortSignal;
}

/**
 * One command in the foreground, whatever the tier: the CLI owns the
 * terminal (a pseudo-terminal of the sandbox's own when brig runs on one),
 * the signals (each ends the sandbox, and the end names it), and hands the
 * driver plain stdio.
 */
export async function runForeground(driver: Driver, plan: SandboxPlan, options: ForegroundOptions): Promise<RunEnd> {
  const ending = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => ending.abort(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, onSignal);
  const onAbort = (): void => ending.abort('SIGTERM');
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort);
  let terminal: Terminal | null = null;
  try {
    terminal = plan.tty ? await openTerminal() : null;
    const io: RunIo = {
      stdio: terminal ? [terminal.slave, terminal.slave, terminal.slave] : options.output ? ['ignore', 'ignore', 'ignore'] : ['inherit', 'inherit', 'inherit'],
      output: options.output,
      started: () => terminal?.attach(),
      signal: ending.signal,
      protectMain: options.protectMain,
      onMemoryEvent: options.onMemoryEvent,
    };
    const end = await driver.run(plan, io);
    await terminal?.drained();
    return end;
  } finally {
    terminal?.close();
    options.signal?.removeEventListener('abort', onAbort);
    for (const signal of FORWARDED_SIGNALS) process.off(signal, onSignal);
  }
}
