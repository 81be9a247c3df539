import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { BrigError, type MemoryEvent } from '../../protocol/index.ts';
import { applyPolicyInput, buildPolicy, compose, imageEnvironment, network, setEnv, resolvePolicy, runAs, user, workspace, workspaceAt, type NetworkPolicy, type Policy, type PolicyChange } from '../../policy/index.ts';
import { agentBasePolicy, agentBinDir, agentPolicyChanges, findAgent, locateAgent, prepareAgentHome, type AgentSpec } from '../../agents/index.ts';
import { checkNetworkRules, relayBinary, startSandboxEgress, withEgressEnvironment, type EgressLedger, type Gateway, type NetworkRules, type SandboxEgress, type Spent, type Violation } from '../../egress/index.ts';
import { IMAGE_ID_COUNT, driverFor, envdHealthy, usableDriver, type Driver, type Liveness, type SandboxHandle, type SandboxImage } from '../../drivers/index.ts';
import { checkBudgets, defaultBudgets, type Budgets } from './budgets.ts';
import { bindEnvdSocket, checkEnvdSocket } from './envd-socket.ts';
import { appendMemoryEvent, readMemoryEvents } from './memory-events.ts';
import { hostOwnerOf } from './host-owner.ts';
import { idRangeOf, readHostAccounts, usedHostIds } from './host-ids.ts';
import { parseRef, type ImageConfig, type ImageStore } from '../../images/index.ts';
import { makeWorkspace, removeSandboxDir } from './workspace.ts';
import { commitSandbox, writeImageSource } from './commit.ts';
import { e2bTemplateImage, listTemplates } from './templates.ts';
import { startTemplate, templateStart } from './template-start.ts';
import type { CommittedImage, CreateSandboxRequest, ListQuery, Page, PublishedPorts, SandboxManager, SandboxPorts, SandboxRecord, SandboxStats, Store, TemplateInfo } from './types.ts';
import type { EnvdEndpoint } from './envd-client.ts';
import type { ActivityBoard, EventLog, Transcripts } from '../timeline/index.ts';
import { HungWatch } from './hung.ts';
import { SandboxSamples, type SandboxSample } from './samples.ts';
import { diskUsage } from './disk-usage.ts';

/**
 * The sandboxes' lifecycle, HTTP-free: create (written down before it boots),
 * timeouts, kill, and reconciliation after a restart: a record whose sandbox
 * still runs is reattached, one whose sandbox is gone is cleaned up, so
 * nothing leaks (processes, cgroups, sockets, directories).
 */

export interface ManagerOptions {
  /** Where sandboxes live: <stateDir>/sandboxes/<id>/{workspace,state}. */
  stateDir: string;
  store: Store;
  /** The tier a sandbox gets when neither its create nor its policy names one (brig serve --tier). */
  tier: string;
  /** The envd bundle every sandbox runs (dist/envd.cjs). */
  envdBundle: string;
  /** E2B's default: 300 s. */
  defaultTimeoutMs?: number;
  /** Sandboxes of the default policy kept booted, so a create that fits takes one at once. Default 0. */
  poolSize?: number;
  /** For sandboxes in allowlist mode: the LLM gateway (null: none configured) and brig's files for Node inside (dist/inside). */
  egress: { gateway: Gateway | null; nodeDir: string };
  /** Agent profiles a sandbox can be created from (templateID or profile): built-in and the daemon user's own. */
  agents?: readonly AgentSpec[];
  /** What all booted sandboxes may commit together; each absent one from the host (defaultBudgets). */
  budgets?: Partial<Budgets>;
  /**
   * brig's image store: a templateID (or `image`) naming one of its images
   * boots a sandbox from it, and 'base' means the image `base` once it is
   * built. Needs the daemon to run as root.
   */
  images?: ImageStore;
  /** Where what happens to sandboxes is recorded (created, killed, timeout, died, oom, hung, violation). */
  events?: EventLog;
  /** The commands running in each sandbox and their output, as the gateway sees them: hung detection (timeouts.hungMs). */
  activity?: ActivityBoard;
  /** Each sandbox's timeline: its model exchanges go there too, in short. */
  transcripts?: Transcripts;
  /** What publishes sandboxes' ports on the host (daemon/ports); without it a create asking for ports is refused. */
  ports?: SandboxPorts;
}

const E2B_HOME = '/home/user';
/** The uid code written for E2B expects inside. */
const SANDBOX_UID = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often sandboxes that died by themselves are looked for. */
const SWEEP_MS = 5000;
/** How long envd has to answer a health check before it counts as a miss. */
const ENVD_ANSWER_MS = 2000;

export async function createSandboxManager(options: ManagerOptions): Promise<SandboxManager> {
  const { store } = options;
  /** A sandbox's driver is the one its handle names: each record keeps its own tier, whatever the daemon's default is now. */
  const driverOf = (handle: SandboxHandle): Driver => driverFor(handle.driver);
  const defaultTimeoutMs = options.defaultTimeoutMs ?? 300_000;
  const timers = new Map<string, NodeJS.Timeout>();
  const budgets: Budgets = { ...defaultBudgets(), ...options.budgets };
  /** Throws BRIG_CAPACITY when booting a sandbox of this policy would pass a budget. Synchronous: call it in the tick that inserts the record. */
  const checkRoomFor = (policy: Policy): void =>
    checkBudgets(budgets, store.all().filter((record) => record.state !== 'stopped').map((record) => record.policy), policy);
  /** The store's images as `name:tag`, read at each create: pool fills between creates decide from it synchronously. */
  let imageRefs = new Set<string>();
  const refreshImages = async (): Promise<void> => {
    if (options.images) imageRefs = new Set((await options.images.imageNames()).map((image) => `${image.name}:${image.tag}`));
  };
  await refreshImages();
  /** The image a create boots from, as `name:tag`: the one it names, or the template's when an image has its name; null for the host's view. */
  const imageOf = (request: CreateSandboxRequest): string | null => {
    const wanted = request.image ?? e2bTemplateImage(request.templateId ?? 'base');
    let ref: string;
    try {
      const parsed = parseRef(wanted);
      ref = `${parsed.name}:${parsed.tag}`;
    } catch {
      if (request.image !== undefined) throw new BrigError('BRIG_IMAGE_INVALID', `image '${request.image}' is not an image reference`, 'give NAME or NAME:TAG, as `brig image ls` lists them');
      return null;
    }
    if (imageRefs.has(ref)) return ref;
    if (request.image !== undefined) throw new BrigError('BRIG_IMAGE_NOT_FOUND', `no image '${request.image}'`, `images: ${[...imageRefs].join(', ') || 'none (brig image build base makes the default one)'}`);
    return null;
  };
  // Traversable, not listable: a sandbox's jail runs as a host uid of its own and must reach its directory.
  mkdirSync(`${options.stateDir}/sandboxes`, { recursive: true, mode: 0o711 });
  if (process.getuid?.() === 0) chmodSync(options.stateDir, 0o711);

  /** As root, the host user a sandbox's files and jail belong to (allocated and recorded); null otherwise (the daemon user's). */
  const hostOwner = (id: string): { uid: number; gid: number } | null => (process.getuid?.() === 0 ? hostOwnerOf(store, id, dirs(id).workspace) : null);

  const dirs = (id: string) => {
    const root = `${options.stateDir}/sandboxes/${id}`;
    return { root, workspace: `${root}/workspace`, state: `${root}/state`, envd: `${root}/state/envd`, egress: `${root}/egress`, transcript: `${root}/transcript.jsonl`, memoryEvents: `${root}/memory-events.jsonl` };
  };

  // Each running sandbox's out-of-memory guard (the driver's): without one, a v1 jail at its limit waits forever.
  const memoryGuards = new Map<string, { close(): void }>();
  const watchMemory = (id: string, handle: SandboxHandle): void => {
    memoryGuards.get(id)?.close();
    memoryGuards.set(id, driverOf(handle).watchMemory(handle, (event: MemoryEvent) => {
      appendMemoryEvent(dirs(id).memoryEvents, event);
      const record = store.get(id);
      if (record?.state === 'running') options.events?.record('oom', { sandbox: id }, { ...event });
      if (event.action !== 'kill-sandbox' || !record) return;
      const index = pool.indexOf(id);
      if (index !== -1) pool.splice(index, 1);
      // Ended like a timeout: the workspace stays only when it was created to be kept.
      void teardown(record, record.state === 'pooled' || !record.keepWorkspace, 'its memory limit: onOutOfMemory kill-sandbox ended it whole').catch(() => {});
    }));
  };

  // Allowlist sandboxes: their proxies, and their network policies as rules change live (read on every connection).
  const egresses = new Map<string, SandboxEgress>();
  const networks = new Map<string, NetworkPolicy>();
  const ledger: EgressLedger = {
    violation: (violation) => {
      store.addViolation(violation);
      options.events?.record('violation', { sandbox: violation.sandbox }, { kind: violation.kind, target: violation.target, rule: violation.rule });
    },
    spent: (sandbox) => store.spent(sandbox),
    charge: (sandbox, delta) => store.charge(sandbox, delta),
    transcript: (entry) => {
      options.transcripts?.exchange(entry);
      try {
        appendFileSync(dirs(entry.sandbox).transcript, JSON.stringify(entry) + '\n', { mode: 0o600 });
      } catch {
        // The sandbox was removed while its last exchange finished: there is no transcript to add to.
      }
    },
  };
  const startEgress = async (record: SandboxRecord): Promise<void> => {
    if (record.policy.network.mode !== 'allowlist') return;
    networks.set(record.id, record.policy.network);
    const egress = await startSandboxEgress({
      sandbox: record.id,
      dir: dirs(record.id).egress,
      owner: hostOwner(record.id),
      network: () => networks.get(record.id) ?? record.policy.network,
      gateway: options.egress.gateway,
      ledger,
    });
    egresses.set(record.id, egress);
  };
  const stopEgress = async (id: string): Promise<void> => {
    const egress = egresses.get(id);
    egresses.delete(id);
    networks.delete(id);
    await egress?.close();
  };

  const find = (idOrName: string): SandboxRecord => {
    const record = store.get(idOrName) ?? store.findByName(idOrName);
    const dead = record?.state === 'running' && record.handle !== null && driverOf(record.handle).liveness(record.handle) === 'gone';
    if (!record || record.state === 'stopped' || record.state === 'pooled' || dead) {
      // Its jail died by itself: stopped, its workspace kept until its timeout (only kill, rm or that delete one).
      if (record && dead) void teardown(record, false, whyGone(record)).then(() => expireDead(record.id)).catch(() => {});
      throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox '${idOrName}'`, 'list them with `brig ls` (or GET /v2/sandboxes); a sandbox ends when its timeout passes, or when its jail dies');
    }
    return record;
  };

  /** Where a running sandbox's envd listens and the token it demands: for the gateway, and for what the daemon runs there itself. */
  const envdEndpoint = (idOrName: string): EnvdEndpoint => {
    const record = find(idOrName);
    if (!record.handle || record.handle.booting) throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `sandbox '${idOrName}' is still starting`, 'wait for its create call to return');
    checkEnvdSocket(record.handle.endpoint.socketPath);
    return { socketPath: record.handle.endpoint.socketPath, accessToken: record.envdAccessToken };
  };

  /** Its ports refused or bound before it boots: a port that cannot be had leaves no sandbox behind. */
  const openPorts = async (record: SandboxRecord, ports: PublishedPorts): Promise<void> => {
    if (!options.ports) throw new BrigError('BRIG_BAD_REQUEST', 'this daemon publishes no ports', 'create the sandbox without agentPort and monitorPort');
    await options.ports.open(record.id, ports, record.policy);
  };

  const schedule = (record: SandboxRecord): void => {
    clearTimeout(timers.get(record.id));
    const left = Date.parse(record.endAt) - Date.now();
    // A timer cannot wait longer than about 24.8 days: wake up then and look again.
    const timer = setTimeout(() => (left > MAX_TIMER_MS ? schedule(store.get(record.id) ?? record) : void kill(record.id, undefined, 'timeout').catch(() => {})), Math.max(0, Math.min(left, MAX_TIMER_MS)));
    timer.unref();
    timers.set(record.id, timer);
  };

  /** Why a sandbox found gone ended: its tier's word when it has one. Before teardown, which removes what the tier reads. */
  const whyGone = (record: SandboxRecord): string =>
    (record.handle && driverOf(record.handle).whyGone?.(record.handle)) || "it ended by itself: its tier's processes are gone";

  /**
   * Stop the sandbox and forget it (its workspace stays when it was created to
   * keep it); `endReason` when it ended by itself. One ending per sandbox at a
   * time: a second (the sweep, a request or a kill finding it gone while the
   * first still stops it) waits for the first instead of ending it, and
   * reporting its death, again; it removes the workspace if it asked to.
   */
  const endings = new Map<string, Promise<void>>();
  const teardown = async (record: SandboxRecord, removeWorkspace: boolean, endReason?: string): Promise<void> => {
    const ending = endings.get(record.id);
    if (ending) {
      await ending.catch(() => {});
      if (removeWorkspace && store.get(record.id)) {
        await removeSandboxDir(dirs(record.id));
        store.remove(record.id);
      }
      return;
    }
    const run = endSandbox(record, removeWorkspace, endReason).finally(() => endings.delete(record.id));
    endings.set(record.id, run);
    await run;
  };
  const endSandbox = async (record: SandboxRecord, removeWorkspace: boolean, endReason?: string): Promise<void> => {
    // A pooled sandbox was never anyone's: its end is no event.
    if (endReason && record.state === 'running') options.events?.record('died', { sandbox: record.id }, { reason: endReason });
    clearTimeout(timers.get(record.id));
    timers.delete(record.id);
    // Its ports first: nobody should reach a shell of a sandbox being stopped.
    await options.ports?.close(record.id).catch(() => {});
    memoryGuards.get(record.id)?.close();
    memoryGuards.delete(record.id);
    if (record.handle) await driverOf(record.handle).stop(record.handle);
    // Its overlay is gone with its jail: prune may take the image's layers again.
    await options.images?.release(record.id);
    await stopEgress(record.id);
    const { state } = dirs(record.id);
    if (removeWorkspace) {
      await removeSandboxDir(dirs(record.id));
      store.remove(record.id);
    } else {
      rmSync(state, { recursive: true, force: true });
      store.update(record.id, { state: 'stopped', handle: null, ...(endReason ? { endReason } : {}) });
    }
  };

  /** Any sandbox the store knows, stopped ones included. */
  const findAny = (idOrName: string): SandboxRecord => {
    const record = store.get(idOrName) ?? store.findByName(idOrName) ?? store.all().find((item) => item.name === idOrName);
    if (!record || record.state === 'pooled') throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox '${idOrName}'`, 'list them with `brig ls --all`');
    return record;
  };

  const remove = async (record: SandboxRecord, data: boolean): Promise<void> => {
    if (record.state !== 'stopped') await teardown(record, data);
    if (data) await removeSandboxDir(dirs(record.id));
    store.remove(record.id);
  };

  const kill = async (idOrName: string, removeWorkspace?: boolean, why: 'killed' | 'timeout' = 'killed'): Promise<void> => {
    const record = find(idOrName);
    // Stopped on request to keep the workspace: kept until rm, like one created to be kept.
    if (removeWorkspace === false && !record.keepWorkspace) store.update(record.id, { keepWorkspace: true });
    await teardown(record, removeWorkspace ?? !record.keepWorkspace);
    options.events?.record(why, { sandbox: record.id }, why === 'timeout' ? { endAt: record.endAt } : {});
  };

  /**
   * A sandbox whose jail died by itself keeps its workspace until its timeout,
   * as it would have running (someone may still want its files); then it goes
   * the way a timeout takes it. One stopped on request, or created to be kept,
   * stays until rm.
   */
  const expireDead = (id: string): void => {
    const record = store.get(id);
    if (!record || record.state !== 'stopped' || record.keepWorkspace) return;
    clearTimeout(timers.get(id));
    const left = Date.parse(record.endAt) - Date.now();
    const timer = setTimeout(() => (left > MAX_TIMER_MS ? expireDead(id) : void removeDead(id)), Math.max(0, Math.min(left, MAX_TIMER_MS)));
    timer.unref();
    timers.set(id, timer);
  };
  const removeDead = async (id: string): Promise<void> => {
    timers.delete(id);
    const record = store.get(id);
    if (record?.state === 'stopped' && !record.keepWorkspace) await remove(record, true).catch(() => {});
  };

  /**
   * Write the record, then make its directories and boot it. The record
   * comes first: a crash from here on is reconciled at the next start.
   */
  const boot = async (record: SandboxRecord): Promise<SandboxRecord> => {
    store.insert(record);
    const paths = dirs(record.id);
    let handle: SandboxHandle;
    try {
      mkdirSync(paths.root, { mode: 0o711 });
      mkdirSync(paths.state, { mode: 0o711 });
      // As root, the sandbox's files belong to a host uid of its own: never root's, never another sandbox's.
      const owner = hostOwner(record.id);
      const driver = usableDriver(record.policy.tier ?? options.tier);
      const image = record.policy.image === null ? undefined : await imageRoot(record.id, record.policy.image, owner, paths.workspace, driver.mapsIds);
      // What it boots from, for a later commit: the ref may be retagged meanwhile.
      if (image && record.policy.image !== null) writeImageSource(paths.root, { ref: record.policy.image, layers: image.digests, config: image.config, idBase: image.idBase });
      // The image's ENV, and its WORKDIR as where commands start by default (as E2B's template workdir), for envd alone.
      // A tier that maps no ids (gVisor) leaves a file the uid it has inside: there the sandbox's user is its host owner.
      const policy = compose(
        ...(image ? [imageEnvironment(image.config.env), ...(image.config.workdir === '/' ? [] : [setEnv('BRIG_ENVD_WORKDIR', image.config.workdir)])] : []),
        ...(!driver.mapsIds && owner && !image && record.policy.identity.uid === SANDBOX_UID ? [runAs(owner.uid, owner.gid)] : []),
      )(record.policy);
      // With resources.diskMiB, a filesystem of that size of its own: what it writes cannot fill the host's disk.
      // An image sandbox's workspace holds its overlay's upper and work directories: root's, never listed by others.
      await makeWorkspace(paths, record.policy.resources.diskMiB, image ? null : owner);
      if (image) chmodSync(paths.workspace, 0o700);
      else if (owner) chownSync(paths.workspace, owner.uid, owner.gid);
      // A profile's config directories and seed files go in its home, which here is the workspace.
      const profile = record.templateId === 'base' || image ? null : findAgent(options.agents ?? [], record.templateId);
      if (profile) {
        prepareAgentHome(profile, paths.workspace, { cwd: E2B_HOME, owner, unattended: true });
        // E2B's SDK runs commands in a login shell, whose /etc/profile resets PATH: its ~/.profile puts the CLI back.
        const dotProfile = `${paths.workspace}/.profile`;
        if (!existsSync(dotProfile)) {
          writeFileSync(dotProfile, `# brig: ${profile.name}'s CLI on PATH\nexport PATH="${agentBinPath(profile)}:$PATH"\n`, { mode: 0o644 });
          if (owner) chownSync(dotProfile, owner.uid, owner.gid);
        }
      }
      await startEgress(record);
      const egress = egresses.has(record.id) ? { socketDir: paths.egress, nodeDir: options.egress.nodeDir, relay: relayBinary() } : undefined;
      const socket = bindEnvdSocket(paths.envd);
      // The driver's handle is written down before the jail starts: a daemon killed mid-boot leaves the next one what it needs to stop it.
      const persist = (pending: SandboxHandle): void => store.update(record.id, { handle: pending });
      handle = await driver.boot({ id: record.id, policy, stateDir: paths.state, envd: { bundle: options.envdBundle, accessToken: record.envdAccessToken, socket }, egress, persist, image });
    } catch (error) {
      await stopEgress(record.id);
      await options.images?.release(record.id).catch(() => {});
      // A directory that would not go keeps its record (stopped, retried at its timeout): the record
      // holds the host uid its leftover files belong to, which must not go to the next sandbox.
      if (await removeSandboxDir(paths).then(() => true, () => false)) store.remove(record.id);
      else store.update(record.id, { state: 'stopped', handle: null });
      throw error;
    }
    const state = record.state === 'pooled' ? 'pooled' : 'running';
    store.update(record.id, { state, handle });
    watchMemory(record.id, handle);
    return { ...record, state, handle };
  };

  /**
   * An image sandbox's root: the image's layers now (a later retag does not change a booting sandbox), its writes
   * in rwDir, its ids a range of its own — on a tier that maps ids; on one that maps none (gVisor) its files keep
   * the ids they have inside, so its upper holds what a layer holds, and a commit shifts nothing.
   */
  const imageRoot = async (id: string, ref: string, owner: { uid: number } | null, rwDir: string, mapsIds: boolean): Promise<SandboxImage & { digests: string[]; config: ImageConfig }> => {
    if (!options.images || owner === null) {
      throw new BrigError('BRIG_IMAGE_NEEDS_ROOT', `sandbox image '${ref}': image sandboxes need the daemon to run as root`, 'start brig serve as root');
    }
    const manifest = await options.images.getImage(ref);
    // Held before anything mounts them: a prune meanwhile would delete files under the sandbox's root.
    await options.images.lease(id, manifest.layers);
    const layers = await Promise.all(manifest.layers.map((digest) => options.images?.layerDir(digest) as Promise<string>));
    const idBase = mapsIds ? idRangeOf(owner.uid, usedHostIds(readHostAccounts())) : 0;
    return { layers, rwDir, idBase, idCount: IMAGE_ID_COUNT, digests: manifest.layers, config: manifest.config };
  };

  const agentBinPath = (spec: AgentSpec): string => `${options.stateDir}/agents/${spec.name}/bin`;

  /** The profile a template names, found where the daemon can see it; null for 'base'. */
  const profileOf = (templateId: string | undefined): PolicyChange[] => {
    if (templateId === undefined || templateId === 'base') return [];
    const spec = findAgent(options.agents ?? [], templateId);
    const visible = agentBasePolicy(spec).filesystem.system;
    const located = locateAgent(spec, { cwd: options.stateDir, home: process.env.HOME || homedir(), env: process.env, visible });
    if (!located) {
      throw new BrigError('BRIG_AGENT_NOT_INSTALLED', `${spec.name}: its CLI '${spec.command}' is not installed where the daemon can find it`, spec.npmPackage ? `on the daemon's host: npm install -g ${spec.npmPackage}` : 'install it on the daemon\'s host');
    }
    const binDir = agentBinDir(agentBinPath(spec), spec.command, located.command);
    return agentPolicyChanges(spec, located, process.env.PATH, visible, binDir);
  };

  const newRecord = (request: CreateSandboxRequest, state: 'pooled' | 'creating'): SandboxRecord => {
    const id = newId();
    const now = Date.now();
    const workspacePath = dirs(id).workspace;
    const image = imageOf(request);
    return {
      id,
      name: request.name ?? null,
      templateId: request.templateId ?? 'base',
      metadata: request.metadata ?? {},
      envVars: request.envVars ?? {},
      policy: withTier(image ? imageSandboxPolicy(image, workspacePath, request) : sandboxPolicy(workspacePath, request, profileOf(request.templateId)), request.tier ?? null, options.tier),
      state,
      startedAt: new Date(now).toISOString(),
      endAt: new Date(now + (request.timeoutMs ?? defaultTimeoutMs)).toISOString(),
      keepWorkspace: request.keepWorkspace ?? false,
      envdAccessToken: randomBytes(24).toString('base64url'),
      workspace: workspacePath,
      handle: null,
      ...(request.ports ? { ports: request.ports } : {}),
    };
  };

  // The warm pool: ids of booted sandboxes of the default policy, taken with shift() (synchronous: never handed out twice).
  const poolSize = options.poolSize ?? 0;
  const pool: string[] = [];
  const filling = new Set<Promise<void>>();
  let closed = false;
  const fill = (): void => {
    while (!closed && pool.length + filling.size < poolSize) {
      let fresh: SandboxRecord;
      try {
        fresh = newRecord({}, 'pooled');
        checkRoomFor(fresh.policy);
      } catch {
        // The budgets are full (or the host is, EMFILE): the pool waits for room rather than taking it from creates.
        return;
      }
      const booting: Promise<void> = boot(fresh)
        .then((record) => {
          pool.push(record.id);
        })
        .catch(() => {
          // A pool that cannot boot stays short; a create then boots cold and reports the error itself.
        })
        .finally(() => filling.delete(booting));
      filling.add(booting);
    }
  };
  /** A create the pool can serve: nothing a pooled sandbox was not booted with. Ports are bound before the boot, so a create with ports boots cold. */
  const poolable = (request: CreateSandboxRequest): boolean =>
    (request.templateId ?? 'base') === 'base' && request.image === undefined && (request.tier ?? options.tier) === options.tier && !request.policy && Object.keys(request.envVars ?? {}).length === 0 && request.allowInternetAccess !== true && request.ports === undefined;

  const livenessOf = (id: string): Liveness => {
    const handle = store.get(id)?.handle;
    return handle ? driverOf(handle).liveness(handle) : 'gone';
  };

  /**
   * A sandbox whose jail died by itself (its envd crashed, a kill from
   * outside) is stopped, not left listed as running; its workspace stays
   * (`brig rm` or prune removes it). Only a jail known to be gone: one that
   * could not be checked (the host out of descriptors) is looked at again later.
   */
  const sweepDead = async (): Promise<void> => {
    for (const record of store.all()) {
      if ((record.state === 'running' || record.state === 'pooled') && record.handle && !record.handle.booting && driverOf(record.handle).liveness(record.handle) === 'gone') {
        const index = pool.indexOf(record.id);
        if (index !== -1) pool.splice(index, 1);
        await teardown(record, record.state === 'pooled', whyGone(record)).catch(() => {});
        if (record.state === 'running') expireDead(record.id);
      }
    }
  };
  const samples = new SandboxSamples(diskUsage);
  const sample = (records: SandboxRecord[]): void =>
    samples.look(records, (record) => {
      try {
        return record.handle && !record.handle.booting ? driverOf(record.handle).usage(record.handle) : null;
      } catch {
        return null;
      }
    });
  /**
   * envd's liveness: every sweep each running sandbox's envd is asked for its
   * health, 2 s at most; one that fails twice running (a frozen sandbox: its
   * processes stopped, or envd stopped by a process of its own user) is
   * `unresponsive`, once until it answers again. A dead one is the sweep's.
   */
  const unanswered = new Map<string, number>();
  const sweepUnresponsive = async (records: SandboxRecord[]): Promise<void> => {
    const running = records.filter((record) => record.state === 'running' && record.handle && !record.handle.booting);
    const answers = await Promise.all(running.map((record) => envdHealthy(record.handle?.endpoint.socketPath ?? '', ENVD_ANSWER_MS)));
    const live = new Set(running.map((record) => record.id));
    for (const id of unanswered.keys()) if (!live.has(id)) unanswered.delete(id);
    running.forEach((record, index) => {
      if (answers[index]) return void unanswered.delete(record.id);
      const misses = (unanswered.get(record.id) ?? 0) + 1;
      unanswered.set(record.id, misses);
      if (misses === 2) options.events?.record('unresponsive', { sandbox: record.id }, { misses, answerMs: ENVD_ANSWER_MS });
    });
  };
  const hungWatch = options.activity ? new HungWatch(options.activity) : null;
  /** Sandboxes whose commands went silent and idle past timeouts.hungMs: an event, and killed when the policy says so. */
  const sweepHung = async (records: SandboxRecord[]): Promise<void> => {
    if (!hungWatch) return;
    const cpu = (record: SandboxRecord): number | null => {
      try {
        return record.handle && !record.handle.booting ? driverOf(record.handle).usage(record.handle).cpuUsec : null;
      } catch {
        return null;
      }
    };
    for (const { record, silentMs, commands } of hungWatch.look(records, cpu)) {
      const { onHung, hungMs } = record.policy.timeouts;
      options.events?.record('hung', { sandbox: record.id }, { silentMs, commands, hungMs, action: onHung });
      if (onHung !== 'kill') continue;
      // Ended as one that died: its workspace kept until its timeout, its record saying why.
      await teardown(record, false, `hung: its commands wrote nothing and it used no CPU for ${Math.round(silentMs / 1000)} s (timeouts.hungMs ${hungMs}, onHung kill)`).catch(() => {});
      options.activity?.forget(record.id);
      expireDead(record.id);
    }
  };
  // Never a rejection nobody hears: under a flood the store or /proc may fail, and that must not end the daemon.
  /** The looks at live sandboxes, on one read of the store taken after the dead ones are gone. */
  const sweepLive = async (): Promise<void> => {
    const records = store.all();
    await sweepHung(records);
    await sweepUnresponsive(records);
    sample(records);
  };
  // One sweep at a time: a slow one (many sandboxes, a busy host) is not overlapped by the next.
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    void sweepDead()
      .then(sweepLive)
      .then(() => fill())
      .catch(() => {})
      .finally(() => (sweeping = false));
  }, SWEEP_MS);
  sweeper.unref();

  // Reconcile what an earlier daemon left: reattach what runs (or could not be checked), clean up
  // what is known to be gone (a sandbox whose boot it never finished is stopped through the handle
  // written before it started).
  for (const record of store.all()) {
    if (record.state === 'stopped') {
      expireDead(record.id);
      continue;
    }
    const liveness: Liveness = record.handle === null || record.handle.booting ? 'gone' : driverOf(record.handle).liveness(record.handle);
    const reattached = record.state === 'running' && liveness !== 'gone';
    const pooled = record.state === 'pooled' && liveness === 'alive' && pool.length < poolSize;
    if (record.handle && (reattached || pooled)) watchMemory(record.id, record.handle);
    if (reattached) {
      // An unknown one too: destroying a live sandbox loses work; the sweep looks again.
      schedule(record);
      // Its jail still sees the egress directory: a new socket there reconnects it.
      await startEgress(record).catch(() => {});
      // Its ports listen again; its monitor shell is found again by its tag.
      if (record.ports) await options.ports?.reopen(record.id, record.ports, record.policy, () => envdEndpoint(record.id)).catch(() => {});
    }
    else if (pooled) pool.push(record.id);
    else {
      // A running sandbox that died meanwhile keeps its workspace, unless its timeout has passed too.
      const expired = Date.parse(record.endAt) <= Date.now();
      await teardown(record, record.state !== 'running' || (expired && !record.keepWorkspace), record.handle?.booting ? 'its boot never finished: the daemon that started it ended first' : whyGone(record)).catch(() => {});
      expireDead(record.id);
    }
  }
  // Leases of sandboxes that ended while no daemon watched (a crash, rm by hand) would hold their layers forever.
  const live = new Set(store.all().filter((record) => record.state !== 'stopped').map((record) => record.id));
  for (const holder of (await options.images?.leaseHolders()) ?? []) if (!holder.startsWith('pid-') && !live.has(holder)) await options.images?.release(holder);
  fill();

  return {
    async create(request: CreateSandboxRequest): Promise<SandboxRecord> {
      const began = Date.now();
      const templateId = request.templateId ?? 'base';
      await refreshImages();
      if (request.image === undefined && templateId !== 'base' && imageOf(request) === null && !(options.agents ?? []).some((agent) => agent.name === templateId || agent.aliases?.includes(templateId))) {
        const names = (options.agents ?? []).map((agent) => agent.name).join(', ');
        throw new BrigError(
          'BRIG_BAD_REQUEST',
          `unknown template '${templateId}': templates are 'base', the images (${[...imageRefs].join(', ') || 'none'}) and the agent profiles (${names || 'none'})`,
          'build or import an image with that name (brig image build, brig image import), or pass a brig `policy` to change a template',
        );
      }
      if (request.name && store.findByName(request.name)) throw new BrigError('BRIG_NAME_TAKEN', `a sandbox named '${request.name}' already runs`, 'pick another name, or remove that sandbox first');
      // A pooled sandbox may have died while it waited: never hand out a dead one, nor one that cannot be checked now (it goes back; this create boots cold).
      let pooledId: string | undefined;
      for (let candidate = poolable(request) ? pool.shift() : undefined; candidate !== undefined; candidate = pool.shift()) {
        // Booted before the base image was built (the host view): not what 'base' means now.
        const stale = store.get(candidate)?.policy.image !== imageOf(request);
        const liveness = stale ? 'gone' : livenessOf(candidate);
        if (liveness === 'alive') pooledId = candidate;
        if (liveness === 'unknown') pool.push(candidate);
        if (liveness !== 'gone') break;
        const dead = store.get(candidate);
        if (dead) await teardown(dead, true).catch(() => {});
      }
      let record: SandboxRecord;
      if (pooledId !== undefined) {
        const now = Date.now();
        const patch = {
          name: request.name ?? null,
          metadata: request.metadata ?? {},
          keepWorkspace: request.keepWorkspace ?? false,
          state: 'running' as const,
          startedAt: new Date(now).toISOString(),
          endAt: new Date(now + (request.timeoutMs ?? defaultTimeoutMs)).toISOString(),
        };
        store.update(pooledId, patch);
        record = store.get(pooledId) ?? { ...newRecord(request, 'creating'), ...patch };
      } else {
        const fresh = newRecord(request, 'creating');
        if (request.ports) await openPorts(fresh, request.ports);
        try {
          // Over a budget, the warm pool gives way first: it is disposable.
          for (;;) {
            try {
              checkRoomFor(fresh.policy);
              break;
            } catch (error) {
              const pooled = pool.shift();
              if (pooled === undefined) throw error;
              const record = store.get(pooled);
              if (record) await teardown(record, true).catch(() => {});
            }
          }
          // No await since the check: the record is inserted in this same tick, so two creates cannot both take the last room.
          record = await boot(fresh);
        } catch (error) {
          if (request.ports) await options.ports?.close(fresh.id).catch(() => {});
          throw error;
        }
      }
      if (record.policy.image !== null && options.images) {
        try {
          const start = templateStart((await options.images.getImage(record.policy.image)).config.labels, record.policy.image);
          if (start) await startTemplate(envdEndpoint(record.id), start, record.policy.image);
        } catch (error) {
          // Not ready is not created: nothing is left running for a caller who got an error.
          await kill(record.id, true).catch(() => {});
          throw error;
        }
      }
      if (record.ports) options.ports?.serve(record.id, () => envdEndpoint(record.id));
      // Refill after this answer is on its way: booting's synchronous part (the plan, the spawn) would delay it.
      setImmediate(fill);
      schedule(record);
      options.events?.record('created', { sandbox: record.id }, { template: record.templateId, tier: record.handle?.driver ?? null, name: record.name, pooled: pooledId !== undefined, createMs: Date.now() - began });
      return record;
    },

    get: find,

    list(query: ListQuery): Page<SandboxRecord> {
      return store.list(query);
    },

    async kill(idOrName: string, killOptions?: { removeWorkspace?: boolean }): Promise<void> {
      await kill(idOrName, killOptions?.removeWorkspace);
    },

    pool() {
      return { ready: pool.length, booting: filling.size, size: poolSize };
    },

    listAll(): SandboxRecord[] {
      return store.all().filter((record) => record.state !== 'pooled');
    },

    lookup(idOrName: string): SandboxRecord {
      return findAny(idOrName);
    },

    async remove(idOrName: string, removeOptions: { data: boolean }): Promise<void> {
      await remove(findAny(idOrName), removeOptions.data);
    },

    async prune(olderThanMs: number): Promise<string[]> {
      const cutoff = Date.now() - olderThanMs;
      const old = store.all().filter((record) => record.state === 'stopped' && Date.parse(record.startedAt) <= cutoff);
      for (const record of old) await remove(record, true);
      return old.map((record) => record.id);
    },

    setTimeout(idOrName: string, timeoutMs: number): SandboxRecord {
      const record = find(idOrName);
      const endAt = new Date(Date.now() + timeoutMs).toISOString();
      store.update(record.id, { endAt });
      const updated = { ...record, endAt };
      schedule(updated);
      return updated;
    },

    endpoint: envdEndpoint,

    metrics(idOrName: string, startUnix?: number, endUnix?: number): SandboxSample[] {
      return samples.of(find(idOrName).id, startUnix, endUnix);
    },

    async stats(idOrName: string): Promise<SandboxStats> {
      const record = find(idOrName);
      const usage = record.handle ? driverOf(record.handle).usage(record.handle) : { memoryBytes: 0, pids: 0, cpuUsec: 0 };
      return { ...usage, diskBytes: await diskUsage(record.workspace) };
    },

    logs(idOrName: string): string {
      const record = find(idOrName);
      const file = `${dirs(record.id).state}/envd.log`;
      return existsSync(file) ? readFileSync(file, 'utf8') : '';
    },

    network(idOrName: string): NetworkPolicy {
      const record = find(idOrName);
      return networks.get(record.id) ?? record.policy.network;
    },

    setNetworkRules(idOrName: string, rules: NetworkRules): NetworkPolicy {
      const record = find(idOrName);
      if (record.policy.network.mode !== 'allowlist') {
        throw new BrigError('BRIG_BAD_REQUEST', `sandbox '${idOrName}' has network mode ${record.policy.network.mode}: it has no rules to change`, 'create it with network.mode "allowlist" (or a policy with network.allow) to filter its traffic');
      }
      checkNetworkRules(rules);
      const policy = applyPolicyInput(record.policy, { network: { allow: rules.allow, deny: rules.deny } }, 'network rules');
      store.update(record.id, { policy });
      networks.set(record.id, policy.network);
      return policy.network;
    },

    violations(idOrName: string | null, limit: number): Violation[] {
      return store.violations(idOrName === null ? null : findAny(idOrName).id, limit);
    },

    recordViolation(violation: Violation): void {
      store.addViolation(violation);
      options.events?.record('violation', { sandbox: violation.sandbox }, { kind: violation.kind, target: violation.target, rule: violation.rule });
    },

    llmUsage(idOrName: string): Spent {
      return store.spent(findAny(idOrName).id);
    },

    memoryEvents(idOrName: string, limit: number): MemoryEvent[] {
      return readMemoryEvents(dirs(findAny(idOrName).id).memoryEvents, limit);
    },

    transcript(idOrName: string): string | null {
      const file = dirs(findAny(idOrName).id).transcript;
      return existsSync(file) ? file : null;
    },

    async commit(idOrName: string, ref: string, commitOptions?: { labels?: Record<string, string> }): Promise<CommittedImage> {
      const record = find(idOrName);
      if (!record.handle || record.handle.booting) throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `sandbox '${idOrName}' is still starting`, 'wait for its create call to return');
      const { image, dropped } = await commitSandbox(options.images, { sandbox: record.id, sandboxDir: dirs(record.id).root, fromImage: record.policy.image !== null, ref, labels: commitOptions?.labels });
      return { ref: `${image.name}:${image.tag}`, layers: image.layers, dropped };
    },

    templates(): Promise<TemplateInfo[]> {
      return listTemplates(options.images, options.agents ?? []);
    },

    async removeImage(ref: string): Promise<void> {
      if (!options.images) throw new BrigError('BRIG_IMAGE_NOT_FOUND', `no image ${ref}: this daemon has no image store (it does not run as root)`, 'start brig serve as root to use images');
      await options.images.removeImage(ref);
    },

    async close(): Promise<void> {
      // Handed-out sandboxes keep running, to be reattached by the next daemon. The pool is
      // disposable: a clean shutdown stops it (after boots in flight finish, so none is left
      // half-recorded); only a crash leaves it, for the next daemon to take back or stop.
      closed = true;
      clearInterval(sweeper);
      await Promise.allSettled([...filling]);
      for (const id of pool.splice(0)) {
        const record = store.get(id);
        if (record) await teardown(record, true).catch(() => {});
      }
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
      for (const guard of memoryGuards.values()) guard.close();
      memoryGuards.clear();
      // Running sandboxes outlive the daemon; their proxies do not, and come back with the next one.
      await Promise.allSettled([...egresses.keys()].map((id) => stopEgress(id)));
      store.close();
    },
  };
}

/** E2B's layout on brig's default policy: user `user`, the workspace as /home/user, an agent profile's changes, then the caller's policy on top. */
/** The sandbox's tier, written into its policy: the create's, else its policy's, else the daemon's default; one that cannot run here is refused now. */
function withTier(policy: Policy, requested: string | null, fallback: string): Policy {
  const tier = requested ?? policy.tier ?? fallback;
  usableDriver(tier);
  return { ...policy, tier };
}

function sandboxPolicy(hostWorkspace: string, request: CreateSandboxRequest, profile: PolicyChange[]): Policy {
  let policy = buildPolicy(
    workspace(hostWorkspace),
    workspaceAt(E2B_HOME),
    user('user', E2B_HOME),
    runAs(SANDBOX_UID, SANDBOX_UID),
    ...profile,
    ...(request.allowInternetAccess === true ? [network('host')] : []),
  );
  if (Object.keys(request.envVars ?? {}).length > 0) policy = applyPolicyInput(policy, { environment: { set: { ...policy.environment.set, ...request.envVars } } }, 'envVars');
  if (request.policy) policy = applyPolicyInput(policy, request.policy, 'policy');
  policy = resolvePolicy(policy, { cwd: hostWorkspace, home: process.env.HOME || homedir() });
  checkNetworkRules(policy.network);
  return withEgressEnvironment(policy);
}

/**
 * A sandbox from an image: its root filesystem the image's, no host
 * workspace bound (the sandbox's writes are its overlay's, in the workspace
 * directory), envd as root inside (it serves `root` and the image's users, as
 * E2B's does), then the caller's policy on top.
 */
function imageSandboxPolicy(image: string, hostWorkspace: string, request: CreateSandboxRequest): Policy {
  const fromImage: PolicyChange = (policy) => ({ ...policy, image, filesystem: { ...policy.filesystem, workspace: null } });
  let policy = buildPolicy(fromImage, runAs(0, 0), user('root', '/root'), ...(request.allowInternetAccess === true ? [network('host')] : []));
  if (Object.keys(request.envVars ?? {}).length > 0) policy = applyPolicyInput(policy, { environment: { set: { ...policy.environment.set, ...request.envVars } } }, 'envVars');
  if (request.policy) policy = applyPolicyInput(policy, request.policy, 'policy');
  policy = resolvePolicy(policy, { cwd: hostWorkspace, home: process.env.HOME || homedir() });
  checkNetworkRules(policy.network);
  return withEgressEnvironment(policy);
}

/** E2B's ids are lower-case letters and digits. */
function newId(): string {
  return `i${randomBytes(10).toString('hex')}`;
}


