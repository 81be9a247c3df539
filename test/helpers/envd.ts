import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { Sandbox, type SandboxOpts } from 'e2b';
import { buildPolicy, compose, resolvePolicy, runAs, setEnv, user, workspace as inWorkspace, type PolicyChange } from '../../src/policy/index.ts';
import { IMAGE_ID_COUNT, driverFor, imageIdBase, type Driver, type SandboxHandle } from '../../src/drivers/index.ts';
import { bindEnvdSocket } from '../../src/daemon/sandboxes/envd-socket.ts';
import { BRIG, tempWorkspace } from './brig.ts';
import { CACHED_USER_IMAGE, cachedUserImageLayers } from './images.ts';
import { TEST_TIERS } from './tiers.ts';

const jailDriver = driverFor('jail');

export const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
export const ENVD = `${REPO}/dist/envd.cjs`;

/**
 * Where envd runs in a test: `unjailed` (a plain process), `jailed` (inside
 * a `brig run` jail over the host's view), `image` (a daemon sandbox from an
 * image: the jail driver boots it over CACHED_USER_IMAGE, envd as root
 * inside serving E2B's `user` by default, as `brig serve` does), `gvisor` (a
 * daemon sandbox of the gVisor tier over the host's view, booted by its
 * driver as `brig serve --tier gvisor` does), `vm` (the same in a microVM:
 * envd in the guest, over brig.service).
 */
export type EnvdMode = 'unjailed' | 'jailed' | 'image' | 'gvisor' | 'vm';
export const ENVD_MODES: readonly EnvdMode[] = ['unjailed', 'jailed', 'image', 'gvisor', 'vm'];

/** How a describe names the mode. */
export function envdWhere(mode: EnvdMode): string {
  return { unjailed: 'unjailed', jailed: 'inside a jail', image: 'in a sandbox from an image', gvisor: 'in a gVisor sandbox', vm: 'in a microVM sandbox' }[mode];
}

/** node:test's skip option for a mode. */
export function envdSkip(mode: EnvdMode): string | false {
  if (mode === 'image' && process.getuid?.() !== 0) return 'sandboxes from images need root (they map a range of ids and mount the layers)';
  if (mode === 'gvisor' || mode === 'vm') return TEST_TIERS.find((entry) => entry.tier === mode)?.skip ?? `no ${mode} tier`;
  return false;
}

export interface TestEnvd {
  mode: EnvdMode;
  /** http://host:port of envd. */
  url: string;
  /** The directory the sandbox works in: its workspace when jailed, a host directory bound at the same path in an image sandbox. */
  workspace: string;
  /** The process the test started (envd, or brig when jailed); null for an image sandbox, which outlives its booter. */
  process: ChildProcess | null;
  /** The user envd serves by default, who owns what the SDK writes. */
  user: string;
  /** envd's own process as the host sees it (its node), for /proc readings. */
  envdPid(): number;
  /**
   * Gives what the test made on the host side of the workspace (a path and
   * everything below it) to the sandbox's default user. In an image sandbox
   * that user is the host ids idBase + 1000, and the test's files (host
   * root's) are nobody's inside, which not even root there may write; elsewhere
   * the test's user is envd's, and this does nothing.
   */
  own(path: string): void;
  /** envd's stderr so far (for failure messages). */
  logs(): string;
  close(): Promise<void>;
}

/**
 * envd from its bundle, exactly as a sandbox runs it: unjailed, inside a
 * `brig run` jail (with the host network, so the test can reach its TCP port;
 * daemon sandboxes reach it through a unix socket instead), or booted by the
 * jail driver from an image (reached through its socket, tcpToUnix).
 */
export async function startTestEnvd(options: { mode?: EnvdMode; jailed?: boolean; accessToken?: string; env?: NodeJS.ProcessEnv }): Promise<TestEnvd> {
  const mode = options.mode ?? (options.jailed ? 'jailed' : 'unjailed');
  if (mode === 'image') return startImageEnvd(options);
  if (mode === 'gvisor' || mode === 'vm') return startTierEnvd(mode, options);
  const workspace = tempWorkspace('brig-envd-');
  const envdArgs = [ENVD, '--listen', '127.0.0.1:0'];
  const env = { ...process.env, ...options.env, ...(options.accessToken ? { BRIG_ENVD_ACCESS_TOKEN: options.accessToken } : {}) };
  const child = mode === 'jailed'
    ? spawn(BRIG, ['run', '--net', 'host', '--ro', REPO, '--env', 'BRIG_ENVD_ACCESS_TOKEN', '--', process.execPath, ...envdArgs], { cwd: workspace.dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, envdArgs, { cwd: workspace.dir, env: { ...env, HOME: workspace.dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /envd listening on (\S+)/.exec(stdout);
      if (match?.[1]) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`envd exited (${code}) before listening: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    mode,
    url: `http://${address}`,
    workspace: workspace.dir,
    process: child,
    user: userInfo().username,
    envdPid: () => envdProcessUnder(child.pid ?? 0),
    own: () => undefined,
    logs: () => stderr,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      workspace.remove();
    },
  };
}

/** The uid (and gid) of E2B's `user` in CACHED_USER_IMAGE (seedUserImage). */
const IMAGE_USER_ID = 1000;

/**
 * Id ranges for the image sandboxes of tests, in the style of the CLI's
 * (src/cli/image-jail.ts): slots of imageIdBase (drivers/jail/image-root.ts),
 * here the 1000 just below the CLI's (65 000 …), far above where the daemon
 * takes its own (host-ids.ts: slot = its sandbox's host id - 200 000, from 0
 * up). Each test process gets a few slots of its own by its pid, so test
 * files running at the same time do not share host ids, and cycles through them.
 */
const TEST_RANGES = { first: 64_000, count: 1000, perProcess: 4 };
let imageBoots = 0;

function testIdBase(): number {
  const processes = TEST_RANGES.count / TEST_RANGES.perProcess;
  const slot = TEST_RANGES.first + (process.pid % processes) * TEST_RANGES.perProcess + (imageBoots % TEST_RANGES.perProcess);
  return imageIdBase(slot) as number;
}

/**
 * envd in a daemon sandbox from an image, booted the way the daemon boots one
 * (sandboxes/manager.ts: imageSandboxPolicy and imageRoot): root inside, no
 * network, the image's layers under an upper directory of its own. The one
 * difference is a workspace: a host directory bound at the same path, owned
 * by the host ids of the image's `user`, so the tests that look at the
 * sandbox's files from the host side can.
 */
async function startImageEnvd(options: { accessToken?: string; env?: NodeJS.ProcessEnv }): Promise<TestEnvd> {
  const skip = envdSkip('image');
  if (skip) throw new Error(skip);
  const layers = await cachedUserImageLayers();
  const idBase = testIdBase();
  const id = `envd-image-${process.pid}-${imageBoots++}`;
  const state = tempWorkspace('brig-envd-image-');
  const workspace = tempWorkspace('brig-envd-');
  const userIds = idBase + IMAGE_USER_ID;
  try {
    // The jail's own ids (idBase …) resolve the path of its mount points below this directory.
    chmodSync(state.dir, 0o711);
    lchownSync(workspace.dir, userIds, userIds);
    const fromImage: PolicyChange = (policy) => ({ ...policy, image: CACHED_USER_IMAGE, filesystem: { ...policy.filesystem, workspace: workspace.dir } });
    const env = Object.entries(options.env ?? {}).map(([name, value]) => setEnv(name, value ?? ''));
    const policy = resolvePolicy(buildPolicy(fromImage, runAs(0, 0), user('root', '/root'), compose(...env)), { cwd: workspace.dir, home: '/root' });
    const socket = bindEnvdSocket(`${state.dir}/envd`);
    const handle = await jailDriver.boot({
      id,
      policy,
      stateDir: `${state.dir}/state`,
      envd: { bundle: ENVD, accessToken: options.accessToken ?? '', socket },
      image: { layers, rwDir: `${state.dir}/rw`, idBase, idCount: IMAGE_ID_COUNT },
    });
    return await reachBooted(jailDriver, handle, state, workspace, { mode: 'image', user: 'user', envdPid: () => envdProcessUnder(handle.pid), own: (path) => chownTree(path, userIds) });
  } catch (error) {
    state.remove();
    workspace.remove();
    throw error;
  }
}

/**
 * envd in a daemon sandbox of the gVisor or vm tier, over the host's view of
 * a workspace of the test's (root's: the sandbox's user is root, as in the
 * `jailed` mode), reached through its socket. Its processes are the Sentry's
 * or the guest's, not the host's: envdPid() has none to give.
 */
async function startTierEnvd(tier: 'gvisor' | 'vm', options: { accessToken?: string; env?: NodeJS.ProcessEnv }): Promise<TestEnvd> {
  const skip = envdSkip(tier);
  if (skip) throw new Error(skip);
  const driver = driverFor(tier);
  const state = tempWorkspace(`brig-envd-${tier}-`);
  const workspace = tempWorkspace('brig-envd-');
  try {
    const env = Object.entries(options.env ?? {}).map(([name, value]) => setEnv(name, value ?? ''));
    const policy = resolvePolicy(buildPolicy(inWorkspace(workspace.dir), compose(...env)), { cwd: workspace.dir, home: '/root' });
    const socket = bindEnvdSocket(`${state.dir}/envd`);
    const handle = await driver.boot({ id: `envd-${tier}-${process.pid}-${tierBoots++}`, policy, stateDir: `${state.dir}/state`, envd: { bundle: ENVD, accessToken: options.accessToken ?? '', socket } });
    return await reachBooted(driver, handle, state, workspace, {
      mode: tier,
      user: userInfo().username,
      envdPid: () => {
        throw new Error(`envd runs in ${tier === 'vm' ? "the VM's guest" : "gVisor's Sentry"}: the host has no process of its own for it`);
      },
      own: () => undefined,
    });
  } catch (error) {
    state.remove();
    workspace.remove();
    throw error;
  }
}
let tierBoots = 0;

type Temp = { dir: string; remove: () => void };

/** A booted daemon sandbox's envd, reached over TCP through its socket; close() stops the sandbox and removes its directories. */
async function reachBooted(driver: Driver, handle: SandboxHandle, state: Temp, workspace: Temp, about: Pick<TestEnvd, 'mode' | 'user' | 'envdPid' | 'own'>): Promise<TestEnvd> {
  const gateway = await tcpToUnix(handle.endpoint.socketPath).catch(async (error: unknown) => {
    await driver.stop(handle);
    throw error;
  });
  return {
    ...about,
    url: gateway.url,
    workspace: workspace.dir,
    process: null,
    logs: () => {
      try {
        return readFileSync(`${state.dir}/state/envd.log`, 'utf8');
      } catch {
        return '';
      }
    },
    async close() {
      gateway.server.close();
      await driver.stop(handle);
      state.remove();
      workspace.remove();
    },
  };
}

function chownTree(path: string, id: number): void {
  lchownSync(path, id, id);
  if (lstatSync(path).isDirectory()) for (const name of readdirSync(path)) chownTree(`${path}/${name}`, id);
}

/**
 * envd's node process among the descendants of root, as the host's /proc
 * shows them: started with the bundle (unjailed, `brig run`), or with the
 * bundle where a sandbox binds it (…/envd/envd.cjs, run through brig's loader).
 */
function envdProcessUnder(root: number): number {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const descends = (pid: number): boolean => pid === root || (pid > 1 && descends(parents.get(pid) ?? 0));
  for (const pid of parents.keys()) {
    if (!descends(pid)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if ((argv[0] === process.execPath && argv[1] === ENVD) || argv.some((arg) => arg.endsWith('/envd/envd.cjs'))) return pid;
  }
  throw new Error(`no envd process under pid ${root}`);
}

/** The real e2b SDK, pointed at a test envd (debug mode: no control plane). */
export function sandboxFor(envd: TestEnvd, extra: Record<string, unknown> = {}): Promise<Sandbox> {
  return Sandbox.create({ debug: true, sandboxUrl: envd.url, apiKey: 'test', ...extra } as SandboxOpts);
}

/**
 * One envd and an SDK sandbox on it for a describe block, started in before()
 * and closed in after() (E2B's sandboxTest fixture). `take` receives them.
 */
export function useEnvd(mode: EnvdMode | boolean, take: (started: { envd: TestEnvd; sandbox: Sandbox }) => void): void {
  let envd: TestEnvd | undefined;
  before(async () => {
    envd = await startTestEnvd(typeof mode === 'boolean' ? { jailed: mode } : { mode });
    take({ envd, sandbox: await sandboxFor(envd) });
  });
  after(() => envd?.close());
}

/** The e2b SDK speaks TCP; a sandbox listens on a unix socket. This stands in for the daemon's gateway. */
export function tcpToUnix(socketPath: string): Promise<{ url: string; server: Server }> {
  const server = createServer((client) => {
    const upstream = connect(socketPath);
    client.pipe(upstream).pipe(client);
    // Like the gateway: one side gone (an aborted fetch, an error) cuts the other. pipe() alone only half-closes,
    // and envd, still writing to a reader that stopped reading, would never learn its client left.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server })));
}

