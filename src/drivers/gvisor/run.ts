import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { BrigError } from '../../protocol/index.ts';
import type { SandboxPlan } from '../plan/index.ts';
import { callerOutput, createCgroup, tierRunDir, killCgroup, prepareUpper, processStart, readCallerInput, removeCgroup, removeRecord, sweepLeftovers, writeRecord, canStage } from '../host/index.ts';
import { watchTimeoutAndAbort, type RunEnd, type RunIo } from '../driver.ts';
import { renderOci, type OciRender } from './oci.ts';
import { writeBundle } from './bundle.ts';
import { launchRunsc, type LaunchOptions } from './launch.ts';
import { requireRunsc, runscFlags, type Runsc } from './runsc.ts';
import { sandboxCgroup, watchOutOfMemory } from './limits.ts';

/**
 * One command in the foreground under runsc. The steps, in order (each
 * undone when a later one fails):
 *   1. clean up after brigs killed before they could (host/records.ts);
 *   2. render the plan (refusals come before anything exists);
 *   3. write this run's record, naming its cgroups and its directory (the
 *      bundle and runsc's state), so a later brig removes them if this one
 *      is killed with SIGKILL;
 *   4. create the cgroups, write the bundle;
 *   5. open every bind source without following links and start `runsc
 *      run` inside the cgroups (the Sentry, gofer and ptrace stubs it starts
 *      are born there) in a private mount namespace where those descriptors
 *      are staged (stage.ts), in its own process group, with a parent-death
 *      signal: runsc gives its sandbox one too, so a brig killed outright
 *      takes the whole sandbox with it;
 *   6. watch: the exit status, the memory limit, the timeout, the caller's abort;
 *   7. kill whatever is left, remove the cgroups, the directory and the record.
 */
export async function runGvisor(plan: SandboxPlan, io: RunIo): Promise<RunEnd> {
  const runsc = requireRunsc();
  await sweepLeftovers();
  const render = renderOci(plan);
  const cgroup = sandboxCgroup(plan.limits.cgroup);
  const dir = tierRunDir('gvisor', plan.id);
  writeRecord({ id: plan.id, ownerPid: process.pid, ownerStart: processStart('self') ?? '', cgroupDirs: cgroup.dirs, killDir: cgroup.killDir, dirs: [dir] });
  try {
    createCgroup(cgroup);
    writeBundle(render, `${dir}/bundle`, canStage());
    mkdirSync(`${dir}/state`, { mode: 0o700 });
    // gVisor maps no ids: the image's root is uid 0 on the host too.
    if (plan.image) prepareUpper(plan.image, 0);
    // A terminal's slave is brig's own (plan.tty): handed over as it is. Anything else of the caller's goes through pipes of brig's.
    const relayed = !plan.tty;
    const stdio: LaunchOptions['stdio'] = relayed ? [io.stdio[0] === 'ignore' ? 'ignore' : 'pipe', io.stdio[1] === 'ignore' && !io.output ? 'ignore' : 'pipe', io.stdio[2] === 'ignore' && !io.output ? 'ignore' : 'pipe'] : io.stdio;
    const child = launchRunsc({ runscArgv: runscArgv(runsc, plan, render, dir), render, dir, cgroup, stdio, dieWithParent: true });
    const stopRelays = relayed ? relayStdio(child, io) : () => {};
    try {
      return await watch(plan, child, dir, io);
    } finally {
      stopRelays();
    }
  } finally {
    killCgroup(cgroup);
    await removeCgroup(cgroup);
    rmSync(dir, { recursive: true, force: true });
    removeRecord(plan.id);
  }
}

/**
 * The command's stdio, carried by brig between the caller's descriptors and
 * pipes runsc gets. runsc must not be handed the caller's own: gVisor writes
 * a donated regular file at offsets of its own, from 0 (\`(echo one; brig
 * run --tier gvisor -- echo two) > log\` lost "one"), and the Go runtime
 * makes a donated pipe non-blocking — the open file brig and the caller
 * share — so brig's own next write to stderr failed with EAGAIN and it died
 * with exit 1 after a gVisor `brig agent`. Returns what stops reading stdin.
 */
function relayStdio(child: ChildProcess, io: RunIo): () => void {
  child.stdout?.on('data', callerOutput(io, 1));
  child.stderr?.on('data', callerOutput(io, 2));
  const stdin = child.stdin;
  if (!stdin) return () => {};
  stdin.on('error', () => {}); // the command may exit without reading it all
  return readCallerInput(io, stdin, () => stdin.end()) ?? (() => {});
}

/** runsc's command line for a foreground run (launch.ts wraps it). */
export function runscArgv(runsc: Runsc, plan: SandboxPlan, render: OciRender, dir: string): string[] {
  const flags = runscFlags(runsc, {
    stateDir: `${dir}/state`,
    network: plan.network.mode === 'host' ? 'host' : 'none',
    // allowlist: brig-relay inside connects out to the host's egress socket, bound in.
    hostUds: plan.network.mode === 'allowlist' ? 'open' : 'none',
    seccomp: render.seccomp,
  });
  return [runsc.path, ...flags, `--log=${dir}/runsc.log`, 'run', '--bundle', `${dir}/bundle`, containerId(plan.id)];
}

/** runsc's container id: the plan's id is already [a-z0-9-]. */
export function containerId(id: string): string {
  return `brig-${id}`;
}

function watch(plan: SandboxPlan, child: ChildProcess, dir: string, io: RunIo): Promise<RunEnd> {
  return new Promise((resolve, reject) => {
    let ended: RunEnd | null = null;
    const cgroup = plan.limits.cgroup;
    const endSandbox = (end: RunEnd): void => {
      ended ??= end;
      killCgroup(cgroup);
    };
    const memory = watchOutOfMemory(cgroup, (event) => {
      io.onMemoryEvent?.(event);
      endSandbox({ reason: 'oom' });
    });
    const stopWatching = watchTimeoutAndAbort(plan.policy.timeouts.runMs, io.signal, endSandbox);
    const cleanup = (): void => {
      stopWatching();
      memory.close();
    };
    child.on('spawn', () => io.started?.());
    child.on('error', (error) => {
      cleanup();
      reject(new BrigError('BRIG_GVISOR_SETUP', `cannot start runsc: ${error.message}`, 'check that runsc is installed (apt-get install runsc); `brig tiers` says what is missing'));
    });
    child.on('close', (code, signal) => {
      cleanup();
      if (ended) return resolve(ended);
      const failure = setupFailure(dir);
      if (failure) return resolve({ reason: 'setup', code: 'BRIG_GVISOR_SETUP', message: failure, hint: `runsc's log is above; \`brig run --tier gvisor --dry-run …\` prints the OCI config` });
      resolve({ reason: 'exit', exitCode: code ?? 128 + signalNumber(signal) });
    });
  });
}

/** runsc's own log names a failure to build the sandbox ("running container: …"); a command's exit never writes there. */
function setupFailure(dir: string): string | null {
  const staging = readText(`${dir}/stage.err`).trim();
  if (staging) return `brig could not stage the bind sources: ${staging.split('\n').join(' | ')}`;
  let log: string;
  try {
    log = readFileSync(`${dir}/runsc.log`, 'utf8');
  } catch {
    return null;
  }
  for (const match of log.matchAll(/"msg":"((?:[^"\\]|\\.)*)","level":"error"/g)) {
    const message = JSON.parse(`"${match[1]}"`) as string;
    if (message.startsWith('running container') || message.startsWith('error setting up')) return `runsc could not build the sandbox: ${message}`;
  }
  return null;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? constants.signals[signal] : 0;
}
