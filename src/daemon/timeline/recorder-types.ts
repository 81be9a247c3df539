/**
 * How what runs in a sandbox gets into its transcript: whoever starts a
 * command or a terminal there (the gateway's tap on process.Process/Start,
 * the agent and monitor ports) opens a recording for it and feeds it what
 * passes. The recorder caps, stores and serves it (timeline/transcripts.ts).
 */

/** What started: as the request said it, cut short by the recorder. */
export interface CommandStart {
  /** The program and its arguments, joined by spaces. */
  argv: string;
  cwd?: string;
  user?: string;
  /** A terminal session (its output is one stream, `pty`). */
  pty: boolean;
  /** E2B's process tag, when it has one. */
  tag?: string;
  /** Who started it: the envd API (the SDK, brig exec…), an agent port connection, the monitor shell, a job. */
  via: 'api' | 'agent-port' | 'monitor' | 'job';
}

export type OutputStream = 'stdout' | 'stderr' | 'pty';

/** One command or terminal session being recorded. Every method is safe to call after the end (it does nothing). */
export interface CommandRecording {
  /** Its pid in the sandbox, once envd says it. */
  started(pid: number): void;
  output(stream: OutputStream, data: Buffer): void;
  /** What was typed into its terminal or written to its stdin. */
  input(data: Buffer): void;
  /** How it ended; null fields when unknown (its stream was cut). Only the first call counts. */
  ended(end: { exitCode: number | null; status: string | null }): void;
}

export interface CommandRecorder {
  command(sandbox: string, start: CommandStart): CommandRecording;
  /** Input for a process whose recording someone else holds (a terminal attached through the API). */
  input(sandbox: string, pid: number, data: Buffer): void;
  /** Whether a recording is open for that process: a second stream of it (Process/Connect) is not recorded twice. */
  recording(sandbox: string, pid: number): boolean;
}
