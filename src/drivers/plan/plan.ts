import { accessSync, constants, existsSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BrigError, EGRESS_DIR_INSIDE, EGRESS_PORT, EGRESS_SOCKET_NAME, INSIDE_DIR, NODE_DIR_INSIDE, RELAY_INSIDE } from '../../protocol/index.ts';
import type { Policy, ResourcesPolicy } from '../../policy/index.ts';
import { imageIdentity, jailIdentity, type Caller } from './identity.ts';
import { mountSteps, within } from './mounts.ts';
import { jailEnvironment } from './environment.ts';
import { toolLibraries } from '../envd-runtime/index.ts';
import { linksOnTheWay, planCgroup } from '../host/index.ts';
import { IMAGE_ROOT_CAPS } from './image.ts';
import type { BridgePlan, ImageRoot, Rlimit, SandboxPlan } from './types.ts';

/**
 * A Policy and a command, resolved once into the tier-neutral sandbox plan
 * (types.ts): every check a user can fail, every path, the identity, the
 * environment, the mounts and the limits. Nothing is started here.
 */

export interface HostContext extends Caller {
  /** Where brig was started: the default workspace's directory. */
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface PlanOptions {
  /** Give the command a terminal of its own (a new pseudo-terminal as its controlling tty). */
  tty: boolean;
  /**
   * A sandbox: it keeps running when the process that started it dies (a
   * daemon restarts and reattaches). Without this, it dies with its parent.
   */
  outlivesParent?: boolean;
  /** Names the sandbox's cgroups (`brig-<id>`); default: this process's pid and a random suffix. */
  id?: string;
  /** Required in allowlist mode: the egress bridge's host parts (see BridgePlan). */
  egress?: EgressParts;
  /**
   * brig's own files bound read-only at other paths inside: envd's runtime
   * closure for a daemon sandbox (drivers/envd-runtime), so a sandbox sees
   * what envd needs and nothing else of brig's install.
   */
  runtime?: Array<{ host: string; sandbox: string }>;
  /**
   * The root is this image's, not the host's view: no system directory,
   * tool or host account file of the host's is in it, and its ids are a
   * range of its own. Needs brig to run as root.
   */
  image?: ImageRoot;
  /** Where the command starts inside, instead of the workspace or home (an image's WORKDIR). */
  cwd?: string;
}

/** The host side of the egress bridge: where its socket listens, brig's Node preload, the relay binary. */
export interface EgressParts {
  socketDir: string;
  nodeDir: string;
  relay: string;
}

export function planSandbox(policy: Policy, command: string[], host: HostContext, options: PlanOptions): SandboxPlan {
  if (command.length === 0) throw new BrigError('BRIG_USAGE', 'no command to run', 'put the command after --, e.g. `brig run -- bash`');
  const { filesystem } = policy;
  const workspace = filesystem.workspace;
  if (workspace !== null) {
    workspaceMustBeDirectory(workspace);
    guardWorkspace(workspace, host.home, 'workspace');
  }
  if (filesystem.home !== null) guardWorkspace(filesystem.home, host.home, 'home');
  // The quota is a filesystem the daemon makes for a sandbox's own workspace; a foreground run binds the caller's directory as it is.
  if (policy.resources.diskMiB !== null && !options.outlivesParent) {
    throw new BrigError('BRIG_POLICY_INVALID', `resources.diskMiB (${policy.resources.diskMiB}): brig run binds your own directory and cannot cap what is written there`, 'drop resources.diskMiB here; it applies to daemon sandboxes (brig create, the e2b SDK), whose workspace brig makes');
  }
  const image = options.image ?? null;
  if (image && host.uid !== 0) {
    throw new BrigError('BRIG_IMAGE_NEEDS_ROOT', 'a sandbox from an image needs brig to run as root (it maps a range of ids and mounts the image)', 'run it through a daemon started as root (brig serve), or as root');
  }

  const identity = image ? imageIdentity(policy.identity, image) : jailIdentity(policy.identity, host, workspace);
  // An image brings its own programs: the host's tools and $TMPDIR stay out.
  const tools = image ? { paths: [], binds: [], dirs: [] } : resolveTools(policy.tools, host.env.PATH, policy.filesystem.system, sandboxWritable(policy));
  const tmpdir = image ? null : privateTmpdir(host.env.TMPDIR, policy);
  const roots = image ? [] : visibleRoots(policy, tools.paths);
  const workspaceInside = workspace === null ? null : (filesystem.workspaceTarget ?? workspace);
  // Where a PATH entry can exist inside: what it sees of the host, and its own writable places.
  const ownDirs = [...roots, identity.home, ...filesystem.tmpfs, ...(tmpdir ? [tmpdir] : []), ...(workspaceInside ? [workspaceInside] : []), INSIDE_DIR];
  const env = jailEnvironment(policy.environment, host.env, identity, {
    tmpdir,
    toolDirs: tools.dirs,
    sees: (dir) => roots.some((root) => within(dir, root)),
    // Every directory of an image's may exist inside.
    has: (dir) => image !== null || ownDirs.some((root) => within(dir, root)),
  });
  const cwd = options.cwd ?? workspaceInside ?? identity.home;
  const runtime = options.runtime ?? [];
  const runtimeHost = (path: string): string | undefined => runtime.find((file) => file.sandbox === path)?.host;
  if (!image) checkCommand(command[0] ?? '', env.PATH ?? '', cwd, [...roots, ...runtime.map((file) => file.host)], (path) => runtimeHost(path) ?? hostPathOf(path, workspace, workspaceInside));

  const id = options.id ?? `${process.pid}-${randomBytes(4).toString('hex')}`;
  const mounts = mountSteps({
    image: image !== null,
    filesystem,
    home: identity.home,
    tmpdir,
    toolPaths: [...tools.binds, ...runtime.map((file) => ({ source: file.host, dest: file.sandbox }))],
    network: policy.network.mode,
    hostRoot: identity.hostUid === 0,
    passwd: identity.passwd,
    group: identity.group,
    hostname: policy.identity.hostname,
  });
  return {
    id,
    policy,
    command,
    mounts,
    identity,
    env,
    cwd,
    hostname: policy.identity.hostname,
    network: { mode: policy.network.mode, bridge: policy.network.mode === 'allowlist' ? bridgePlan(options.egress) : null },
    limits: { cgroup: planCgroup(id, policy.resources), rlimits: rlimits(policy.resources) },
    syscalls: { extraDeny: policy.syscalls.extraDeny, logOnly: policy.syscalls.logOnly },
    // Root in an image sandbox is root of its own ids only: it keeps what installing packages needs, in its namespace.
    capabilities: image && identity.uid === 0 ? IMAGE_ROOT_CAPS : [],
    tty: options.tty,
    outlivesParent: options.outlivesParent ?? false,
    image,
  };
}

/**
 * The sandbox's way out in allowlist mode. It has a network of its own with
 * only a loopback; brig-relay (native/spawn/relay.c) listens on
 * 127.0.0.1:EGRESS_PORT there and carries each connection to the host's unix
 * socket, bound in through its directory (so a daemon that restarts can put a
 * new socket in place). The relay listens before it execs the command, so the
 * command never races it.
 */
function bridgePlan(parts: EgressParts | undefined): BridgePlan {
  if (!parts) throw new BrigError('BRIG_POLICY_INVALID', 'network mode allowlist needs the egress proxy, and this caller started none', 'use brig run or brig serve, which start it; or choose network mode none or host');
  return {
    ...parts,
    mounts: [
      { source: parts.socketDir, target: EGRESS_DIR_INSIDE },
      { source: parts.relay, target: RELAY_INSIDE },
      { source: parts.nodeDir, target: NODE_DIR_INSIDE },
    ],
    prefix: [RELAY_INSIDE, `${EGRESS_PORT}=${EGRESS_DIR_INSIDE}/${EGRESS_SOCKET_NAME}`, '--'],
  };
}

/** Per-process limits, in place from the command's first instruction. No core dumps: a crash must not write memory to disk. */
function rlimits(resources: ResourcesPolicy): Rlimit[] {
  const fileSizeBytes = resources.maxFileSizeMiB * 1024 * 1024;
  return [
    { name: 'NOFILE', soft: resources.openFiles.soft, hard: resources.openFiles.hard },
    { name: 'NPROC', soft: resources.processes.soft, hard: resources.processes.hard },
    { name: 'CORE', soft: 0, hard: 0 },
    { name: 'FSIZE', soft: fileSizeBytes, hard: fileSizeBytes },
  ];
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

/** Host directories a sandbox of this policy can write: where a planted link could wait. */
function sandboxWritable(policy: Policy): string[] {
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
