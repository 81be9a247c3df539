/** spawn.c: posix_spawn for envd; daemon.c: what `brig serve` needs; layerfs.c: overlay whiteouts and opaque directories; relay.c: brig-relay; exec.c: brig-exec; init.c: brig-init; statx-compat.c: brig-statx.so; vm-init.c: brig-vm-init. */
declare const addon: {
  /** Start `file` (PATH-searched when it has no '/') as a session leader on pipes; stdin is /dev/null unless `stdinPipe`. Returns [pid, stdinFd (-1 without), stdoutFd, stderrFd]. Throws an errno error. */
  spawn(file: string, argv: string[], envp: string[], cwd: string, stdinPipe: boolean): [number, number, number, number];
  /** waitpid(pid, WNOHANG): null while it runs, else [exitCode, 0] or [-1, signal]; [-1, 0] when it is not ours. */
  reap(pid: number): [number, number] | null;
  /** A unix socket bound at `path` and listening, as a bare close-on-exec fd (nothing accepts on it until handed to a child). Throws an errno error. */
  listenUnix(path: string, backlog: number): number;
  /** flock(fd, LOCK_EX | LOCK_NB): true when this open file now holds the lock, false when another open file holds it. */
  lockExclusive(fd: number): boolean;
  /** mknod(path, S_IFCHR | 0, 0/0): an overlay whiteout where nothing exists yet. Throws an errno error (EEXIST, EPERM…). */
  makeWhiteout(path: string): void;
  /** lsetxattr(dirPath, 'trusted.overlay.opaque', 'y'): the directory hides what lower layers hold there. Needs CAP_SYS_ADMIN; ENOTDIR for a non-directory (a symlink is not followed). Throws an errno error. */
  setOpaque(dirPath: string): void;
  /** True when dirPath carries trusted.overlay.opaque=y (a symlink is not followed); false without it. Throws an errno error (ENOENT…). */
  isOpaque(dirPath: string): boolean;
  /** Set FD_CLOEXEC on an fd this process inherited, so no program it starts inherits it too. Throws an errno error. */
  closeOnExec(fd: number): void;
  /** prctl(PR_SET_DUMPABLE, 0): this process's /proc entries (environ, mem, fd) closed to others of its uid; exec clears it. Throws an errno error. */
  notDumpable(): void;
  /**
   * Absolute path of the brig-relay executable (build/Release/brig-relay):
   * `brig-relay PORT=SOCKETPATH [PORT=SOCKETPATH…] -- command [args…]` listens on
   * 127.0.0.1:PORT, relays each connection to the unix socket SOCKETPATH, and
   * execs the command. Exit 125 on a setup error, 126/127 when the command cannot run.
   */
  relayPath: string;
  /**
   * Absolute path of the brig-exec executable (build/Release/brig-exec):
   * `brig-exec [--rlimit NAME=SOFT:HARD]... [--die-with PID [--supervise]] --keep-fds N -- PROGRAM ARGS...` sets
   * rlimits, closes every fd above N and execs PROGRAM; with --die-with, PROGRAM is
   * killed when its parent dies, and at once when that parent is no longer PID;
   * with --supervise, brig-exec stays as PROGRAM's parent to do the killing (for a
   * PROGRAM that changes its ids, which clears its own parent-death signal). Exit 125 on a usage or
   * setup error, 126/127 when PROGRAM cannot run.
   */
  execPath: string;
  /**
   * Absolute path of brig-init (build/Release/brig-init, static): pid 1 of a
   * gVisor sandbox. `brig-init -- PROGRAM ARGS...` runs PROGRAM as its child,
   * forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2, SIGWINCH and SIGCONT
   * to it, reaps every orphan, and exits with PROGRAM's status (128 + N for
   * signal N; 127/126 when it cannot run, 125 on a usage error).
   */
  initPath: string;
  /**
   * Absolute path of brig-statx.so (build/Release/brig-statx.so), preloaded
   * into gVisor sandboxes: Debian's runsc refuses statx(2) with
   * AT_NO_AUTOMOUNT, which bookworm's coreutils always passes (statx-compat.c).
   */
  statxCompatPath: string;
  /**
   * Absolute path of brig-vm-init (build/Release/brig-vm-init, static): pid 1
   * of a microVM guest, packed as /init into the initramfs. It loads the
   * modules, mounts the sandbox's files (virtiofs), runs the command with its
   * stdio on virtio-serial ports and reports its end (src/drivers/vm/channel.ts).
   */
  vmInitPath: string;
};
export = addon;
