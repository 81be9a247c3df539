import { accessSync, constants, existsSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BrigError, INSIDE_DIR } from '../../protocol/index.ts';
import type { Policy } from '../../policy/index.ts';
import { compileSeccomp, hostSeccompArch } from './seccomp/index.ts';
import { jailIdentity, type Caller, type JailIdentity } from './identity.ts';
import { mountArgs, within } from './mounts.ts';
import { jailEnvironment } from './environment.ts';
import { rlimitArgs } from './rlimits.ts';
import { planCgroup, type CgroupPlan } from './cgroup.ts';
import { egressBridge, type EgressBridge } from './egress.ts';
import { toolLibraries } from '../envd-runtime/index.ts';
import { fdTable, linksOnTheWay, type PlanFd } from './sources.ts';
import brigSpawn from 'brig-spawn';

/**
 * The file descriptors handed to bubblewrap's launcher, in the child's
 * numbering: what bubblewrap reads, then envdSocket, envd's listening socket,
 * which passes through bubblewrap to envd (a daemon sandbox; nothing for `brig
 * run`), then the bind sources and data files (plan.fds) from 8 on. brig-exec
 * closes every fd above the last.
 */
export const FD = { seccomp: 3, status: 4, passwd: 5, group: 6, envdSocket: 7, bindSources: 8 } as const;

export interface HostContext extends Caller {
  /** Where brig was started: the default workspace's directory. */
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface JailPlanOptions {
  /** Give the command a terminal of its own (a new pseudo-terminal as its controlling tty). */
  tty: boolean;
  /**
   * A sandbox: it keeps running when the process that started it dies (a
   * daemon restarts and reattaches). Without this, the jail dies with its parent.
   */
  outlivesParent?: boolean;
  /** Names the jail's cgroups (`brig-<id>`); default: this process's pid and a random suffix. */
  id?: string;
  /** Required in allowlist mode: how the jail's loopback proxy port reaches the host (see egress.ts). */
  egress?: EgressBridge;
  /**
   * brig's own files bound read-only at other paths inside: envd's runtime
   * closure for a daemon sandbox (drivers/envd-runtime), so a sandbox sees
   * what envd needs and nothing else of brig's install.
   */
  runtime?: Array<{ host: string; sandbox: string }>;
}

/**
 * Everything needed to start one jail, computed before anything starts:
 * printable (`--dry-run`), testable, and the only input of launch.ts.
 */
export interface JailPlan {
  id: string;
  policy: Policy;
  command: string[];
  /** The full argv: brig-exec, its limits and fd bound, bwrap, its arguments, the command. */
  argv: string[];
  /** What bubblewrap reads on fds FD.bindSources, FD.bindSources + 1, …: bind sources (opened at launch without following links) and data. */
  fds: PlanFd[];
  env: Record<string, string>;
  cwd: string;
  identity: JailIdentity;
  cgroup: CgroupPlan;
  /** Data bubblewrap reads from file descriptors (see FD). */
  seccompProgram: Buffer;
  seccompSummary: string[];
  tty: boolean;
}

export function planJail(policy: Policy, command: string[], host: HostContext, options: JailPlanOptions): JailPlan {
  if (command.length === 0) throw new BrigError('BRIG_USAGE', 'no command to run', 'put the command after --, e.g. `brig run -- bash`');
  const { filesystem } = policy;
  const workspace = filesystem.workspace;
  if (workspace !== null) {
    workspaceMustBeDirectory(workspace);
    guardWorkspace(workspace, host.home, 'workspace');
  }
  if (filesystem.home !== null) guardWorkspace(filesystem.home, host.home, 'home');
  // The quota is a filesystem the daemon makes for a sandbox's own workspace; a foreground jail binds the caller's directory as it is.
  if (policy.resources.diskMiB !== null && !options.outlivesParent) {
    throw new BrigError('BRIG_POLICY_INVALID', `resources.diskMiB (${policy.resources.diskMiB}): brig run binds your own directory and cannot cap what is written there`, 'drop resources.diskMiB here; it applies to daemon sandboxes (brig create, the e2b SDK), whose workspace brig makes');
  }
  const bwrap = findExecutable('bwrap', host.env.PATH);
  if (!bwrap) throw new BrigError('BRIG_BWRAP_MISSING', 'bubblewrap (bwrap) is not installed', 'run `npm run setup` (or `sudo apt-get install bubblewrap`)');
  if (host.uid !== 0) checkUserNamespaces();

  const identity = jailIdentity(policy.identity, host, workspace);
  const tools = resolveTools(policy.tools, host.env.PATH, policy.filesystem.system, jailWritable(policy));
  const tmpdir = privateTmpdir(host.env.TMPDIR, policy);
  const roots = visibleRoots(policy, tools.paths);
  const workspaceInside = workspace === null ? null : (filesystem.workspaceTarget ?? workspace);
  // Where a PATH entry can exist for the jail: what it sees of the host, and its own writable places.
  const jailDirs = [...roots, identity.home, ...filesystem.tmpfs, ...(tmpdir ? [tmpdir] : []), ...(workspaceInside ? [workspaceInside] : []), INSIDE_DIR];
  const env = jailEnvironment(policy.environment, host.env, identity, {
    tmpdir,
    toolDirs: tools.dirs,
    sees: (dir) => roots.some((root) => within(dir, root)),
    has: (dir) => jailDirs.some((root) => within(dir, root)),
  });
  const cwd = workspaceInside ?? identity.home;
  const runtime = options.runtime ?? [];
  const runtimeHost = (path: string): string | undefined => runtime.find((file) => file.sandbox === path)?.host;
  checkCommand(command[0] ?? '', env.PATH ?? '', cwd, [...roots, ...runtime.map((file) => file.host)], (path) => runtimeHost(path) ?? hostPathOf(path, workspace, workspaceInside));

  const bridge = policy.network.mode === 'allowlist' ? egressBridge(options.egress) : null;
  const seccomp = compileSeccomp({ arch: hostSeccompArch(), extraDeny: policy.syscalls.extraDeny, logOnly: policy.syscalls.logOnly });
  const id = options.id ?? `${process.pid}-${randomBytes(4).toString('hex')}`;
  const fds = fdTable(FD.bindSources);
  const bwrapArgs = [
    '--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup',
    // allowlist: a network namespace of its own too; its only way out is the egress bridge.
    ...(policy.network.mode === 'host' ? [] : ['--unshare-net']),
    '--uid', String(identity.uid), '--gid', String(identity.gid),
    // A nested user namespace would let the jail map itself root again: refuse them twice (here and in seccomp).
    '--disable-userns',
    '--hostname', policy.identity.hostname,
    '--cap-drop', 'ALL',
    ...(options.outlivesParent ? [] : ['--die-with-parent']),
    // With a terminal of its own the jail starts its own session (setsid below); without one,
    // a new session keeps it from the caller's terminal (no TIOCSTI into it).
    ...(options.tty ? [] : ['--new-session']),
    ...mountArgs({
      filesystem,
      home: identity.home,
      tmpdir,
      toolPaths: [...tools.binds, ...runtime.map((file) => ({ source: file.host, dest: file.sandbox }))],
      network: policy.network.mode,
      hostRoot: identity.hostUid === 0,
      passwdFd: FD.passwd,
      groupFd: FD.group,
      hostname: policy.identity.hostname,
      fds,
    }),
    ...(bridge ? bridge.mounts : []),
    '--chdir', cwd,
    '--seccomp', String(FD.seccomp),
    '--json-status-fd', String(FD.status),
    '--',
    ...(options.tty ? ['/usr/bin/setsid', '--ctty'] : []),
    ...(bridge ? bridge.prefix : []),
    ...command,
  ];
  return {
    id,
    policy,
    command,
    // brig-exec keeps exactly the fds brig hands over (0 … the last of plan.fds) and closes the rest.
    argv: [brigSpawn.execPath, ...rlimitArgs(policy.resources), '--keep-fds', String(FD.bindSources + fds.entries.length - 1), '--', bwrap, ...bwrapArgs],
    fds: fds.entries,
    env,
    cwd,
    identity,
    cgroup: planCgroup(id, policy.resources),
    seccompProgram: seccomp.program,
    seccompSummary: seccomp.summary,
    tty: options.tty,
  };
}

/** The workspace and a kept home are written by the jail: never the caller's home itself, an ancestor of it, or /. */
function guardWorkspace(dir: string, home: string, field: 'workspace' | 'home'): void {
  const rel = relative(dir, home);
  if (dir === '/' || rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) {
    throw new BrigError(
      'BRIG_POLICY_INVALID',
      `the ${field} ${dir} contains your home directory (${home}): the jail would see your dotfiles and credentials`,
      field === 'workspace' ? 'run brig from a project directory, or give one with --workspace DIR' : 'give filesystem.home a directory of its own, e.g. under ~/.local/state/brig',
    );
  }
}

function workspaceMustBeDirectory(dir: string): void {
  let stats: Stats;
  try {
    stats = statSync(dir);
  } catch {
    throw new BrigError('BRIG_PATH_MISSING', `the workspace ${dir} does not exist on the host`, 'create the directory first, or give an existing one with --workspace DIR');
  }
  if (!stats.isDirectory()) throw new BrigError('BRIG_PATH_MISSING', `the workspace ${dir} is not a directory`, 'give a directory with --workspace DIR');
}

function checkUserNamespaces(): void {
  const read = (file: string): string | null => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      return null;
    }
  };
  if (read('/proc/sys/user/max_user_namespaces') === '0' || read('/proc/sys/kernel/unprivileged_userns_clone') === '0') {
    throw new BrigError(
      'BRIG_USERNS_UNAVAILABLE',
      'this kernel does not allow unprivileged user namespaces',
      'enable them: `sudo sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000`, or run brig as root',
    );
  }
}

/** The caller's $TMPDIR gets a private tmpfs at the same path, when it exists and is not already one. */
function privateTmpdir(tmpdir: string | undefined, policy: Policy): string | null {
  if (!tmpdir || !isAbsolute(tmpdir) || !existsSync(tmpdir)) return null;
  return policy.filesystem.tmpfs.includes(tmpdir) ? null : tmpdir;
}

interface Tools {
  /** Host paths the jail sees (at the same path). */
  paths: string[];
  /** Read-only binds: a real file (no links on its path) at the path the jail knows it by. */
  binds: Array<{ source: string; dest: string }>;
  /** Directories put on the jail's PATH. */
  dirs: string[];
}

/**
 * Each tool, its real file, and — for a program from outside the system
 * directories — the shared libraries it links that the jail would not see.
 */
function resolveTools(names: string[], hostPath: string | undefined, systemDirs: string[], writable: string[]): Tools {
  const paths = new Set<string>();
  const binds = new Map<string, string>();
  const dirs = new Set<string>();
  const visible = (path: string) => systemDirs.some((dir) => within(path, dir));
  for (const name of names) {
    const found = name.includes('/') ? (existsSync(name) ? name : null) : findExecutable(name, hostPath);
    if (!found) throw new BrigError('BRIG_PATH_MISSING', `tool '${name}' is not on the host PATH`, 'install it, or give its absolute path in tools');
    const real = realpathSync(found);
    // A link where a jail writes may have been planted by one (even on the way from a host link such as
    // `npm link` makes into a project): only links outside those are followed.
    const planted = linksOnTheWay(found).find((link) => writable.some((dir) => within(link, dir)));
    if (planted) {
      throw new BrigError('BRIG_PATH_SYMLINK', `tools: ${found} leads through the symbolic link ${planted} (to ${real}), inside a directory jails write`, `if ${real} is what you mean, name it directly`);
    }
    for (const path of [found, real]) {
      paths.add(path);
      binds.set(path, real);
    }
    if (statSync(real).isDirectory()) {
      // A whole tree (a toolchain under /opt): its bin directory goes on PATH.
      dirs.add(existsSync(join(found, 'bin')) ? join(found, 'bin') : found);
      continue;
    }
    dirs.add(dirname(found));
    if (visible(real)) continue;
    for (const library of toolLibraries(real)) {
      if (visible(library)) continue;
      paths.add(library);
      binds.set(library, library);
    }
  }
  return { paths: [...paths], binds: [...binds].map(([dest, source]) => ({ source, dest })), dirs: [...dirs] };
}

/** Host directories a jail of this policy can write: where a planted link could wait. */
function jailWritable(policy: Policy): string[] {
  const { filesystem } = policy;
  return [...filesystem.readWrite, ...(filesystem.workspace ? [filesystem.workspace] : []), ...(filesystem.home ? [filesystem.home] : [])];
}

/** A path inside the jail as a path on the host: the workspace may appear elsewhere inside. */
function hostPathOf(path: string, workspace: string | null, workspaceInside: string | null): string {
  if (workspace === null || workspaceInside === null || workspace === workspaceInside) return path;
  if (path === workspaceInside) return workspace;
  return path.startsWith(`${workspaceInside}/`) ? workspace + path.slice(workspaceInside.length) : path;
}

/** Host directories the jail sees at the same path. */
function visibleRoots(policy: Policy, toolPaths: string[]): string[] {
  const { filesystem } = policy;
  return [...filesystem.system, ...filesystem.readOnly, ...filesystem.readWrite, ...toolPaths, ...(filesystem.workspace ? [filesystem.workspace] : [])];
}

/**
 * Say "not found" before building a jail, as a shell would, rather than after
 * bubblewrap fails. Only directories the jail sees count.
 */
function checkCommand(name: string, path: string, cwd: string, roots: string[], toHost: (path: string) => string): void {
  const visible = (file: string): boolean => roots.some((root) => within(file, root));
  const candidates = (name.includes('/') ? [isAbsolute(name) ? name : join(cwd, name)] : path.split(':').filter(isAbsolute).map((dir) => join(dir, name))).map(toHost);
  let exists: string | null = null;
  for (const file of candidates) {
    if (!visible(file) || !isFile(file)) continue;
    exists ??= file;
    try {
      accessSync(file, constants.X_OK);
      return;
    } catch {
      // Keep looking: a later PATH entry may be executable.
    }
  }
  if (exists) throw new BrigError('BRIG_COMMAND_NOT_EXECUTABLE', `${exists} is not executable`, `make it executable (chmod +x ${exists}) or run it through its interpreter`);
  throw new BrigError(
    'BRIG_COMMAND_NOT_FOUND',
    `command not found in the jail: ${name}`,
    name.includes('/') ? 'check the path; the jail sees the workspace, system directories and what --ro/--rw add' : 'install it on the host, or make its directory visible with --ro DIR (tools in your home are hidden by default)',
  );
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

export function findExecutable(name: string, path: string | undefined): string | null {
  for (const dir of (path || '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!isAbsolute(dir)) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // Not here.
    }
  }
  return null;
}
