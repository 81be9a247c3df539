import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { INSIDE_DIR } from '../../protocol/index.ts';
import { compose, setEnv, type PolicyChange } from '../../policy/index.ts';

/**
 * drivers/envd-runtime: what a sandbox needs to run envd when its root
 * filesystem is not the host's (a bare jail root, a container image, a
 * microVM): the node binary, the shared libraries it links (from ldd), the
 * dynamic loader, envd's bundle and its native modules (node-pty,
 * brig-spawn). All go read-only under one directory, and envd starts
 * through the loader with that directory as its library path, so nothing of
 * the sandbox's own /lib is used or needed.
 */

export interface RuntimeFile {
  /** Path on the host. */
  host: string;
  /** Path inside the sandbox. */
  sandbox: string;
}

export interface EnvdRuntime {
  /** Files and directories to put in the sandbox, read-only. */
  files: RuntimeFile[];
  /** The command that starts envd inside the sandbox. */
  argv(listen: string): string[];
}

export interface EnvdRuntimeOptions {
  /** The host's envd bundle (dist/envd.cjs). */
  envdBundle: string;
  /** Where the runtime goes inside the sandbox. */
  root?: string;
  /** The node binary to use (default: the one running brig). */
  node?: string;
}

export function envdRuntime(options: EnvdRuntimeOptions): EnvdRuntime {
  const root = options.root ?? '/opt/brig';
  const node = programRuntime(root, options.node ?? process.execPath);
  const files: RuntimeFile[] = [...node.files, { host: realpathSync(options.envdBundle), sandbox: `${root}/envd/envd.cjs` }];
  // envd's native modules, found as its bundle's require() finds them.
  for (const name of ['node-pty', 'brig-spawn']) {
    const dir = nodeModule(options.envdBundle, name);
    if (!dir) throw new Error(`${name} is not installed beside ${options.envdBundle}: run npm ci`);
    files.push({ host: dir, sandbox: `${root}/envd/node_modules/${name}` });
  }
  return {
    files,
    argv: (listen) => node.argv(`${root}/envd/envd.cjs`, '--listen', listen),
  };
}

/** One host program (Node, virtiofsd) under `root` inside: its binary, loader and libraries. */
export interface ProgramRuntime {
  files: RuntimeFile[];
  /** The command that runs it inside with `args`, through the loader (nothing of the sandbox's /lib is used). */
  argv(...args: string[]): string[];
}

export function programRuntime(root: string, binary: string): ProgramRuntime {
  const program = realpathSync(binary);
  const { libraries, loader } = sharedLibraries(program);
  const lib = `${root}/lib`;
  const inside = `${root}/bin/${basename(program)}`;
  return {
    files: [
      { host: program, sandbox: inside },
      { host: loader.path, sandbox: `${lib}/${loader.soname}` },
      ...libraries.map((library) => ({ host: library.path, sandbox: `${lib}/${library.soname}` })),
    ],
    argv: (...args) => [`${lib}/${loader.soname}`, '--library-path', lib, inside, ...args],
  };
}

interface Library {
  /** The name the loader looks for (the left side of ldd's `=>`). */
  soname: string;
  /** The file it resolves to on the host. */
  path: string;
}

/**
 * The shared libraries (and loader) a host program needs, as host paths; empty
 * for a script or a static binary. For tools brought into a jail from outside
 * the system directories.
 */
export function toolLibraries(binary: string): string[] {
  try {
    const { libraries, loader } = sharedLibraries(binary);
    return [...libraries.map((library) => library.path), loader.path];
  } catch {
    return [];
  }
}

/**
 * ldd's answers by binary, with the binary's identity then. ldd is a shell
 * script that runs the loader three times: 15–100 ms, synchronous, and a
 * daemon asked on every sandbox boot with its event loop blocked. An answer
 * is reused while the binary is the same file unchanged and every library
 * and loader it named is still there (an upgrade that replaces the binary,
 * or moves a library, asks ldd again).
 */
const lddAnswers = new Map<string, { identity: string; answer: { libraries: Library[]; loader: Library } }>();

function fileIdentity(path: string): string {
  const stats = statSync(path);
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

/** The libraries ldd resolves for a binary, and its dynamic loader. */
function sharedLibraries(binary: string): { libraries: Library[]; loader: Library } {
  const identity = fileIdentity(binary);
  const known = lddAnswers.get(binary);
  if (known && known.identity === identity && [known.answer.loader, ...known.answer.libraries].every((library) => existsSync(library.path))) return known.answer;
  const answer = askLdd(binary);
  lddAnswers.set(binary, { identity, answer });
  return answer;
}

function askLdd(binary: string): { libraries: Library[]; loader: Library } {
  const output = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libraries: Library[] = [];
  let loader: Library | null = null;
  for (const line of output.split('\n')) {
    const resolved = /^\s*(\S+)\s+=>\s+(\/\S+)/.exec(line);
    if (resolved?.[1] && resolved[2]) {
      libraries.push({ soname: resolved[1], path: realpathSync(resolved[2]) });
      continue;
    }
    const direct = /^\s*(\/\S+)\s+\(/.exec(line);
    if (direct?.[1]) loader = { soname: basename(direct[1]), path: realpathSync(direct[1]) };
  }
  if (!loader) throw new Error(`ldd found no dynamic loader for ${binary}`);
  return { libraries, loader };
}

/** A package as the bundle resolves it: in the nearest node_modules up from the bundle. */
function nodeModule(bundle: string, name: string): string | null {
  for (let dir = dirname(realpathSync(bundle)); dir !== '/'; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(candidate)) return realpathSync(candidate);
  }
  return null;
}

/** Where a daemon sandbox's envd runtime appears inside (under brig's own directory). */
export const ENVD_INSIDE = `${INSIDE_DIR}/envd`;
/** A sandbox's PATH is its own, never the daemon's (which names the host's layout). */
const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * What every tier adds to a daemon sandbox's policy for envd: its access
 * token, and a PATH of the sandbox's own (the daemon's stays out; a PATH the
 * sandbox's policy sets still wins).
 */
export function envdPolicy(accessToken: string): PolicyChange {
  const ownPath: PolicyChange = (policy) => {
    const { environment } = policy;
    return { ...policy, environment: { ...environment, forward: environment.forward.filter((name) => name !== 'PATH'), set: { PATH: SANDBOX_PATH, ...environment.set } } };
  };
  return compose(setEnv('BRIG_ENVD_ACCESS_TOKEN', accessToken), ownPath);
}
