import type { ProcessConfig, ProcessInfo } from '../../protocol/index.ts';
import type { Child, OutputSource } from './child.ts';
import { Fanout, type Subscriber } from './output.ts';
import { endEvent, signalSession, type ExitInfo } from './signals.ts';

/**
 * After the program exits, how long its output may stay open before the
 * `end` is sent anyway: a descendant it left behind (`server &`) can hold
 * stdout forever. The clock runs only while no client is congested, so the
 * program's own last output (at most what a pipe holds) still reaches a slow
 * client in full; past TAIL_BYTES after the exit, what comes is a
 * descendant's and is cut as well. Cutting closes envd's read end: the
 * descendant keeps running, and gets EPIPE if it writes again.
 */
export const EXIT_GRACE_MS = 200;
/** A pipe holds at most 1 MiB (/proc/sys/fs/pipe-max-size's default): the exited program cannot have left more. */
const TAIL_BYTES = 1024 * 1024;

/** setTimeout's ceiling; a longer lifetime means no limit in practice (24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ProcessRecord {
  config: ProcessConfig;
  tag: string | null;
}

/** A started program: its clients, its lifetime, and its one `end`. */
export class RunningProcess {
  readonly pid: number;
  private readonly fanout = new Fanout();
  private lifetime: NodeJS.Timeout | null = null;
  private exitInfo: ExitInfo | null = null;
  private tailBytes = 0;
  private finished = false;

  constructor(
    readonly child: Child,
    readonly record: ProcessRecord,
    /** Called once the `end` is decided (before it is sent): the table forgets the process. */
    private readonly onEnd: (process: RunningProcess) => void,
  ) {
    this.pid = child.pid;
  }

  /** True until the program itself exits (List shows only these). */
  get running(): boolean {
    return this.exitInfo === null;
  }

  get info(): ProcessInfo {
    const terminal = this.child.sources.some((source) => source.kind === 'pty');
    return { pid: this.pid, config: this.record.config, ...(this.record.tag !== null ? { tag: this.record.tag } : {}), ...(terminal ? { pty: true } : {}) };
  }

  attach(subscriber: Subscriber): void {
    this.fanout.attach(subscriber, this.pid);
  }

  /**
   * Start relaying output and watching the exit. Call after attaching the
   * Start stream, so that its first event is `start`. `lifetimeMs` (the
   * Start call's Connect-Timeout-Ms) SIGKILLs everything the program runs when
   * it expires.
   */
  run(lifetimeMs: number | null): void {
    if (lifetimeMs !== null && lifetimeMs <= MAX_TIMER_MS) {
      this.lifetime = setTimeout(() => this.signal('SIGKILL'), lifetimeMs);
    }
    for (const source of this.child.sources) this.relay(source);
    void this.child.exited.then((exit) => this.afterExit(exit));
  }

  /** Signal everything the program runs: every process group of the session it leads. */
  signal(signal: NodeJS.Signals): void {
    signalSession(this.pid, signal);
  }

  /** Each chunk is published before the next is read: the source stays paused while any client is congested. */
  private relay(source: OutputSource): void {
    source.onData((chunk) => {
      if (this.finished) return;
      if (this.exitInfo !== null) {
        this.tailBytes += chunk.length;
        if (this.tailBytes > TAIL_BYTES) return void this.finish(); // a descendant's flood: nothing more after the end
      }
      const pending = this.fanout.publishData(source.kind, chunk);
      if (pending) {
        source.pause();
        void pending.then(() => source.resume());
      }
    });
  }

  private afterExit(exit: ExitInfo): void {
    this.exitInfo = exit;
    const outputClosed = Promise.all(this.child.sources.map((source) => source.ended));
    void outputClosed.then(() => this.finish());
    // A grace that only counts time in which no client held the output back.
    let flowingMs = 0;
    const tick = Math.max(10, EXIT_GRACE_MS / 4);
    const timer = setInterval(() => {
      if (this.finished) return clearInterval(timer);
      if (!this.fanout.congested) flowingMs += tick;
      if (flowingMs >= EXIT_GRACE_MS) {
        clearInterval(timer);
        void this.finish();
      }
    }, tick);
    timer.unref();
  }

  /** Stop reading, forget the process, send the `end` to every client. */
  private async finish(): Promise<void> {
    if (this.finished || this.exitInfo === null) return;
    this.finished = true;
    if (this.lifetime) clearTimeout(this.lifetime);
    for (const source of this.child.sources) source.destroy();
    this.onEnd(this);
    await this.fanout.finish({ end: endEvent(this.exitInfo) });
  }
}
