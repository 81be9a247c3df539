/** spawn.c: posix_spawn for envd. */
declare const addon: {
  /** Start `file` (PATH-searched when it has no '/') as a session leader on pipes; stdin is /dev/null unless `stdinPipe`. Returns [pid, stdinFd (-1 without), stdoutFd, stderrFd]. Throws an errno error. */
  spawn(file: string, argv: string[], envp: string[], cwd: string, stdinPipe: boolean): [number, number, number, number];
  /** waitpid(pid, WNOHANG): null while it runs, else [exitCode, 0] or [-1, signal]; [-1, 0] when it is not ours. */
  reap(pid: number): [number, number] | null;
};
export = addon;
