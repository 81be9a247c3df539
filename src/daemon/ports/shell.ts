import type { ProcessEvent, ProcessSelector } from '../../protocol/index.ts';
import type { EnvdClient } from '../sandboxes/index.ts';
import type { CommandRecorder, CommandRecording, CommandStart } from '../timeline/index.ts';

/**
 * A shell the daemon runs in a sandbox on a terminal of its own, for a
 * published port: started through envd's process.Process/Start (or, after
 * a restart, followed again with Connect), its output handed on a chunk at
 * a time, typed into with SendInput, killed with SendSignal. Everything
 * that passes is fed to the recorder when there is one.
 */

/** As E2B's commands: the sandbox's user, in its home. */
export const SHELL_USER = 'user';
export const SHELL_CWD = '/home/user';
/** A terminal's size until someone attached says otherwise. */
const SIZE = { cols: 80, rows: 24 };
/** How long a killed shell's end may take before it is let go of (a frozen sandbox never says). */
const END_AFTER_KILL_MS = 5000;

export interface ShellEnd {
  exitCode: number | null;
  status: string | null;
}

export interface ShellSpec {
  sandbox: string;
  envd: EnvdClient;
  via: 'agent-port' | 'monitor';
  recorder?: CommandRecorder;
}

export class PtyShell {
  private pidKnown: number | null = null;
  private readonly stream = new AbortController();
  private inputs: Promise<void> = Promise.resolve();
  private recording: CommandRecording | null = null;
  private tag: string | null = null;
  private killed = false;

  constructor(private readonly spec: ShellSpec) {}

  get pid(): number | null {
    return this.pidKnown;
  }

  /**
   * Starts `argv` (tagged `tag`) and follows it to its end: `output` gets
   * each chunk, and the next is not read before the promise it returns
   * settles (envd then holds the shell's output back: nothing piles up
   * here). Resolves with how it ended; throws when it could not start.
   */
  start(argv: string[], tag: string, envs: Record<string, string>, hooks: { started?: () => void; output: (chunk: Buffer) => unknown }): Promise<ShellEnd> {
    const [cmd = '', ...args] = argv;
    this.tag = tag;
    this.recording = record(this.spec.recorder, this.spec.sandbox, { argv: argv.join(' '), pty: true, via: this.spec.via, user: SHELL_USER, cwd: SHELL_CWD, tag });
    const events = this.spec.envd.start({ process: { cmd, args, envs, cwd: SHELL_CWD }, pty: { size: SIZE }, tag }, null, this.stream.signal);
    return this.follow(events, hooks);
  }

  /** Follows a shell already running (a restarted daemon finding it by its tag), recorded anew unless someone records it already. */
  reattach(pid: number, start: CommandStart, hooks: { output: (chunk: Buffer) => unknown }): Promise<ShellEnd> {
    const recorder = this.spec.recorder;
    if (recorder && !guard(() => recorder.recording(this.spec.sandbox, pid), true)) this.recording = record(recorder, this.spec.sandbox, start);
    this.pidKnown = pid;
    return this.follow(this.spec.envd.connect({ pid }, this.stream.signal), hooks);
  }

  /** Bytes typed into its terminal, in order, one call at a time; resolves once envd took them (true), or could not (false: the shell is gone). */
  write(data: Buffer): Promise<boolean> {
    const sent = this.inputs.then(async () => {
      if (this.pidKnown === null || this.killed) return false;
      const pid = this.pidKnown;
      // It has ended when envd refuses: its end is on its way, and what was typed has nowhere to go.
      const taken = await this.spec.envd.sendInput({ pid }, data).then(() => true, () => false);
      if (taken) this.recording?.input(data);
      return taken;
    });
    this.inputs = sent.then(() => undefined);
    return sent;
  }

  /**
   * SIGKILL to the shell and everything it runs, by its tag while its pid
   * is not known yet (and again by pid once it is); its end still comes
   * through the stream, which is let go of if it does not.
   */
  kill(): void {
    if (this.killed) return;
    this.killed = true;
    const target: ProcessSelector | null = this.pidKnown !== null ? { pid: this.pidKnown } : this.tag !== null ? { tag: this.tag } : null;
    if (target) void this.spec.envd.sendSignal(target, 'SIGNAL_SIGKILL').catch(() => {});
    setTimeout(() => this.stream.abort(), END_AFTER_KILL_MS).unref();
  }

  /** Stop following (the shell runs on). */
  detach(): void {
    this.stream.abort();
  }

  private async follow(events: AsyncGenerator<ProcessEvent>, hooks: { started?: () => void; output: (chunk: Buffer) => unknown }): Promise<ShellEnd> {
    let end: ShellEnd = { exitCode: null, status: null };
    let started = false;
    try {
      for await (const event of events) {
        if ('start' in event && Number.isInteger(event.start.pid) && (this.pidKnown === null || this.pidKnown === event.start.pid) && !started) {
          started = true;
          this.pidKnown = event.start.pid;
          this.recording?.started(event.start.pid);
          // Killed while it was starting: now it has a pid to kill.
          if (this.killed) void this.spec.envd.sendSignal({ pid: event.start.pid }, 'SIGNAL_SIGKILL').catch(() => {});
          hooks.started?.();
        } else if ('data' in event && 'pty' in event.data && typeof event.data.pty === 'string') {
          const chunk = Buffer.from(event.data.pty, 'base64');
          this.recording?.output('pty', chunk);
          await hooks.output(chunk);
        } else if ('end' in event) {
          end = { exitCode: Number.isInteger(event.end.exitCode) ? event.end.exitCode : null, status: typeof event.end.status === 'string' ? event.end.status : null };
        }
      }
    } catch (error) {
      // Cut before it even began (no such program, the sandbox gone): the caller says so.
      if (!started && !this.stream.signal.aborted) {
        this.recording?.ended(end);
        throw error;
      }
      // Cut later (we let go, the sandbox ended): how it ended is unknown.
    }
    this.recording?.ended(end);
    return end;
  }
}

/**
 * A recording whose failures stay its own: a recorder that throws (a full
 * disk, a bug) loses what it was given, never the shell or the daemon.
 */
function record(recorder: CommandRecorder | undefined, sandbox: string, start: CommandStart): CommandRecording | null {
  const recording = recorder ? guard(() => recorder.command(sandbox, start), null) : null;
  if (!recording) return null;
  return {
    started: (pid) => guard(() => recording.started(pid), undefined),
    output: (stream, data) => guard(() => recording.output(stream, data), undefined),
    input: (data) => guard(() => recording.input(data), undefined),
    ended: (end) => guard(() => recording.ended(end), undefined),
  };
}

function guard<T>(call: () => T, fallback: T): T {
  try {
    return call();
  } catch {
    return fallback;
  }
}
