import type { PtySize } from '../../protocol/index.ts';
import type { OutputKind } from './output.ts';
import type { ExitInfo } from './signals.ts';

/**
 * What running.ts needs from a started program, whether it runs on pipes
 * (spawn.ts) or on a terminal (pty.ts).
 */
export interface Child {
  /** Its pid, which is also its session and process group id: it leads a session of its own. */
  readonly pid: number;
  readonly sources: OutputSource[];
  /** Resolves when the program itself has exited (its descendants may live on). */
  readonly exited: Promise<ExitInfo>;
  /** Write to its stdin or its terminal; resolves once the bytes are handed to the kernel. */
  write(kind: 'stdin' | 'pty', data: Buffer): Promise<void>;
  closeStdin(): void;
  resize(size: PtySize): void;
}

/** One output channel, read in order, that can be paused for backpressure. */
export interface OutputSource {
  readonly kind: OutputKind;
  onData(listener: (chunk: Buffer) => void): void;
  pause(): void;
  resume(): void;
  /** Resolves at end of file: every writer (the program, and any descendant holding it) has closed it. */
  readonly ended: Promise<void>;
  /** Stop reading for good; whatever is still unread is dropped and later writers get EPIPE. */
  destroy(): void;
}
