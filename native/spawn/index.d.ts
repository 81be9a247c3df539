/** spawn.c: posix_spawn for envd; daemon.c: what `brig serve` needs; relay.c: brig-relay; exec.c: brig-exec. */
declare const addon: {
  /** Start `file` (PATH-searched when it has no '/') as a session leader on pipes; stdin is /dev/null unless `stdinPipe`. Returns [pid, stdinFd (-1 without), stdoutFd, stderrFd]. Throws an errno error. */
  spawn(file: string, argv: string[], envp: string[], cwd: string, stdinPipe: boolean): [number, number, number, number];
  /** waitpid(pid, WNOHANG): null while it runs, else [exitCode, 0] or [-1, signal]; [-1, 0] when it is not ours. */
  reap(pid: number): [number, number] | null;
  /** A unix socket bound at `path` and listening, as a bare close-on-exec fd (nothing accepts on it until handed to a child). Throws an errno error. */
  listenUnix(path: string, backlog: number): number;
  /** flock(fd, LOCK_EX | LOCK_NB): true when this open file now holds the lock, false when another open file holds it. */
  lockExclusive(fd: number): boolean;
  /** Set FD_CLOEXEC on an fd this process inherited, so no program it starts inherits it too. Throws an errno error. */
  closeOnExec(fd: number): void;
  /**
   * Absolute path of the brig-relay executable (build/Release/brig-relay):
   * `brig-relay PORT=SOCKETPATH [PORT=SOCKETPATH…] -- command [args…]` listens on
   * 127.0.0.1:PORT, relays each connection to the unix socket SOCKETPATH, and
   * execs the command. Exit 125 on a setup error, 126/127 when the command cannot run.
   */
  relayPath: string;
  /**
   * Absolute path of the brig-exec executable (build/Release/brig-exec):
   * `brig-exec [--rlimit NAME=SOFT:HARD]... --keep-fds N -- PROGRAM ARGS...` sets
   * rlimits, closes every fd above N and execs PROGRAM. Exit 125 on a usage or
   * setup error, 126/127 when PROGRAM cannot run.
   */
  execPath: string;
};
export = addon;
