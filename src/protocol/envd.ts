/**
 * envd's messages in proto3's JSON mapping (camelCase names, bytes as
 * base64, int64 as decimal strings, enums by name), as E2B's process.proto
 * and filesystem.proto define them. Shared by envd, the daemon's gateway and
 * the SDK. Readers ignore fields they do not know; writers omit what is unset.
 */

/** The envd version brig reports: at or above every feature gate of the e2b SDK 2.x. */
export const ENVD_VERSION = '0.6.3';
/** E2B's envd port, which SDKs put in the E2b-Sandbox-Port header. */
export const ENVD_PORT = 49983;

export const SERVICE = { process: 'process.Process', filesystem: 'filesystem.Filesystem' } as const;

// ---- process.Process -------------------------------------------------------

export interface ProcessConfig {
  cmd: string;
  args?: string[];
  envs?: Record<string, string>;
  cwd?: string;
}

export interface PtySize {
  cols: number;
  rows: number;
}

export interface StartRequest {
  process: ProcessConfig;
  pty?: { size: PtySize };
  tag?: string;
  /** Keep stdin open for SendInput (envd 0.3.0+); otherwise it is closed at start. */
  stdin?: boolean;
}

/** Which process a request is about: one of pid or tag. */
export interface ProcessSelector {
  pid?: number;
  tag?: string;
}

export type ProcessEvent =
  | { start: { pid: number } }
  | { data: { stdout: string } | { stderr: string } | { pty: string } }
  | { end: EndEvent }
  | { keepalive: Record<string, never> };

export interface EndEvent {
  /** The exit code, or -1 when a signal ended the process. */
  exitCode: number;
  /** True when the process exited by itself, false when a signal ended it. */
  exited: boolean;
  /** As Go's ProcessState.String(): "exit status 1", "signal: killed". */
  status: string;
  error?: string;
}

/** Start and Connect stream these. */
export interface ProcessStreamMessage {
  event: ProcessEvent;
}

/**
 * Exit statuses are Go's ProcessState.String(), as E2B's envd reports them
 * ("exit status 1", "signal: killed"): code that matches on them keeps working.
 */
/** Go's names for Linux signals (syscall/zerrors_linux_*.go), the words after "signal: ". */
const GO_SIGNAL_WORDS: Partial<Record<NodeJS.Signals, string>> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
  SIGSTKFLT: 'stack fault',
  SIGCHLD: 'child exited',
  SIGCONT: 'continued',
  SIGSTOP: 'stopped (signal)',
  SIGTSTP: 'stopped',
  SIGTTIN: 'stopped (tty input)',
  SIGTTOU: 'stopped (tty output)',
  SIGURG: 'urgent I/O condition',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGVTALRM: 'virtual timer expired',
  SIGPROF: 'profiling timer expired',
  SIGWINCH: 'window changed',
  SIGIO: 'I/O possible',
  SIGPWR: 'power failure',
  SIGSYS: 'bad system call',
};

/** "signal: killed" for SIGKILL. */
export function goSignalStatus(signal: NodeJS.Signals): string {
  return `signal: ${GO_SIGNAL_WORDS[signal] ?? signal}`;
}

/** The signal an `end` status names ("signal: killed" → SIGKILL); null for an exit status. */
export function signalOfStatus(status: string): NodeJS.Signals | null {
  const word = /^signal: (.*)$/.exec(status)?.[1];
  if (word === undefined) return null;
  for (const [signal, name] of Object.entries(GO_SIGNAL_WORDS)) if (name === word) return signal as NodeJS.Signals;
  return word.startsWith('SIG') ? (word as NodeJS.Signals) : null;
}

export interface ProcessInfo {
  pid: number;
  config: ProcessConfig;
  tag?: string;
  /** brig's addition (E2B's readers ignore it): true when the process runs on a terminal, which `brig attach` can show. */
  pty?: boolean;
}

export type ProcessInput = { stdin: string } | { pty: string };

export type ProcessSignal = 'SIGNAL_SIGTERM' | 'SIGNAL_SIGKILL';

// ---- filesystem.Filesystem -------------------------------------------------

export type FileType = 'FILE_TYPE_FILE' | 'FILE_TYPE_DIRECTORY' | 'FILE_TYPE_SYMLINK';

export interface EntryInfo {
  name: string;
  type: FileType;
  path: string;
  /** int64 as a decimal string. */
  size: string;
  mode: number;
  /** Like `ls -l`: "-rw-r--r--". */
  permissions: string;
  owner: string;
  group: string;
  /** RFC 3339. */
  modifiedTime: string;
  symlinkTarget?: string;
}

export type FilesystemEventType = 'EVENT_TYPE_CREATE' | 'EVENT_TYPE_WRITE' | 'EVENT_TYPE_REMOVE' | 'EVENT_TYPE_RENAME' | 'EVENT_TYPE_CHMOD';

export interface FilesystemEvent {
  /** Path of the entry relative to the watched directory. */
  name: string;
  type: FilesystemEventType;
  entry?: EntryInfo;
}

/** WatchDir streams these, with no `event` wrapper. */
export type WatchDirMessage = { start: Record<string, never> } | { filesystem: FilesystemEvent } | { keepalive: Record<string, never> };

// ---- plain HTTP --------------------------------------------------------------

/** POST /files answers one of these per file written. */
export interface WriteInfo {
  name: string;
  type: 'file';
  path: string;
}
