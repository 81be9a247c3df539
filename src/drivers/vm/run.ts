import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, rmSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import { createServer, type Server, type Socket } from 'node:net';
import { cpus } from 'node:os';
import brigSpawn from 'brig-spawn';
import { BrigError, defaultStateDir, EGRESS_SOCKET_NAME } from '../../protocol/index.ts';
import type { SandboxPlan } from '../plan/index.ts';
import { callerOutput, createCgroup, dieWithParent, tierRunDir, killCgroup, processStart, readCallerInput, removeCgroup, removeRecord, spawnInside, sweepLeftovers, watchWholeSandboxOom, writeRecord, type CgroupPlan } from '../host/index.ts';
import { watchTimeoutAndAbort, type RunEnd, type RunIo } from '../driver.ts';
import { encodeRecord, RecordReader, type ChannelRecord } from './channel.ts';
import { guestConfig, type TerminalSize } from './guest.ts';
import { guestSize, vmCgroup } from './limits.ts';
import { PORTS, qemuArgv, type PortName, type VmMachine } from './qemu.ts';
import { serveGuestEgress } from './egress-port.ts';
import { startFileServer } from './file-server.ts';
import { imageViewMessage } from './image-view.ts';
import { hasNetworkDevice } from './network.ts';
import { requireVm } from './status.ts';
import { vmArtefacts } from './build.ts';
import { chooseAccel } from './accel.ts';
import { GuestWatchdog, HUNG_HINT, hungError, silenceAllowedMs } from './heartbeat.ts';

/**
 * One command in the foreground in a microVM. The steps, in order (each
 * undone when a later one fails):
 *   1. refuse what the tier cannot render (guest.ts), before anything exists;
 *   2. the guest kernel and initramfs: built once, then cached (build.ts);
 *   3. a record naming the run's cgroups and directory (a brig killed with
 *      SIGKILL is cleaned up after by the next one), then the cgroups;
 *   4. virtiofsd, in the sandbox's view built by bubblewrap exactly as the
 *      jail's (jail/host-view.ts), on a socket brig made;
 *   5. QEMU, in the same cgroups, with a parent-death signal; it connects to
 *      the channel's ports, where brig sends the init the sandbox's config;
 *   6. stdio carried over the ports (and in allowlist mode the guest's
 *      connections to the run's proxy, egress.ts); the end comes as the init's `exit`
 *      record, then QEMU ends; the timeout, the memory limit or the caller's
 *      abort end the VM whole;
 *   7. kill whatever is left, remove the cgroups, the directory, the record.
 */

export async function runVm(plan: SandboxPlan, io: RunIo): Promise<RunEnd> {
  const qemu = requireVm();
  const terminal = plan.tty ? callerTerminal(io) : null;
  try {
    return await runVmOn(qemu, plan, io, terminal);
  } finally {
    await terminal?.close();
  }
}

async function runVmOn(qemu: string, plan: SandboxPlan, io: RunIo, terminal: CallerTerminal | null): Promise<RunEnd> {
  const config = guestConfig(plan, 'foreground', terminal?.size());
  const size = guestSize(plan, cpus().length);
  const say = (line: string): void => void process.stderr.write(`brig: ${line}\n`);
  const artefacts = await vmArtefacts(defaultStateDir(), brigSpawn.vmInitPath, say);
  const accel = await chooseAccel(defaultStateDir(), qemu, artefacts.kernel.vmlinuz, say);
  await sweepLeftovers();
  const cgroup = vmCgroup(plan.limits.cgroup, size.memoryMiB);
  const silenceMs = silenceAllowedMs();
  const dir = tierRunDir('vm', plan.id);
  writeRecord({ id: plan.id, ownerPid: process.pid, ownerStart: processStart('self') ?? '', cgroupDirs: cgroup.dirs, killDir: cgroup.killDir, dirs: [dir] });
  const servers: Server[] = [];
  let watchdog: GuestWatchdog | undefined;
  try {
    createCgroup(cgroup);
    mkdirSync(dir, { mode: 0o700 });
    const bridge = plan.network.bridge;
    const ports: PortName[] = [...PORTS, ...(bridge ? ['brig.egress' as const] : [])];
    const connected = ports.map((name) => listenOnce(`${dir}/${name}.sock`, servers));
    // The guest's console and virtiofsd's messages: only their tails are kept (a guest could write without end).
    const console = new Tail(64 * 1024);
    const fileServerLog = new Tail(16 * 1024);
    void listenOnce(`${dir}/console.sock`, servers).then((socket) => {
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        console.push(chunk);
        if (process.env.BRIG_VM_DEBUG) process.stderr.write(chunk);
      });
    }, () => {});
    const fileServer = startFileServer(plan, dir, cgroup, 'pipe');
    fileServer.stderr?.on('data', (chunk: Buffer) => fileServerLog.push(chunk));
    // Its message, when it failed (say, refusing an image): QEMU then fails to connect, and the message may come a moment after.
    const fileServerEnded = new Promise<void>((resolve) => fileServer.once('close', () => resolve()));
    const machine: VmMachine = { qemu, accel, vmlinuz: artefacts.kernel.vmlinuz, initramfs: artefacts.initramfs, memoryMiB: size.memoryMiB, cpus: size.cpus, fsSocket: `${dir}/fs.sock`, ports: ports.map((name) => ({ name, end: { socket: `${dir}/${name}.sock` } })),
      // Not a file: a guest could write to its console without end; brig keeps only the tail.
      console: { socket: `${dir}/console.sock` }, network: hasNetworkDevice(plan) };
    // Supervised: QEMU becomes nobody once set up (-runas), which clears a parent-death signal of its own.
    const [qemuFile, ...qemuArgs] = dieWithParent(qemuArgv(machine), { supervise: true });
    const child = spawnInside(cgroup, () => spawn(qemuFile as string, qemuArgs, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, cwd: '/', env: { PATH: '/usr/bin:/bin' } }));
    let qemuErrors = '';
    child.stderr?.on('data', (chunk: Buffer) => (qemuErrors = (qemuErrors + chunk.toString()).slice(-4000)));
    // From QEMU's start: a guest that hangs while it boots never connects its ports' first record either.
    watchdog = new GuestWatchdog(silenceMs, () => killCgroup(cgroup));
    const hungNow = watchdog;
    const sockets = await Promise.race([
      Promise.all(connected),
      new Promise<never>((_, reject) =>
        child.once('close', () => {
          const wait = new Promise<void>((resolve) => setTimeout(resolve, 1000).unref());
          if (hungNow.hung) return reject(hungError(`${hungNow.hung}: ${lastLines(console.text()) || 'the console is empty'}`));
          void Promise.race([fileServerEnded, wait]).then(() => reject(setupError(`QEMU ended before it connected to brig: ${[imageViewMessage(dir), lastLines(fileServerLog.text()), lastLines(qemuErrors)].filter(Boolean).join(' | ')}`)));
        }),
      ),
    ]);
    const [ctl, stdin, stdout, stderr, egress] = sockets as [Socket, Socket, Socket, Socket, Socket | undefined];
    if (bridge && egress) {
      serveGuestEgress(egress, `${bridge.socketDir}/${EGRESS_SOCKET_NAME}`, (error) => process.stderr.write(`brig: the VM's way out (brig.egress) broke and is closed: ${error.message}\n`));
    }
    for (const record of config) ctl.write(encodeRecord(record));
    io.started?.();
    return await watch({ plan, io, terminal, cgroup, child, ctl, stdin, stdout, stderr, watchdog, console: () => console.text(), fileServerLog: () => fileServerLog.text(), qemuErrors: () => qemuErrors });
  } finally {
    watchdog?.stop();
    for (const server of servers) server.close();
    killCgroup(cgroup);
    await removeCgroup(cgroup);
    rmSync(dir, { recursive: true, force: true });
    removeRecord(plan.id);
  }
}

/** The last `size` bytes of a stream. */
class Tail {
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(private readonly size: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
    while (this.length - (this.chunks[0]?.length ?? 0) >= this.size) this.length -= (this.chunks.shift() as Buffer).length;
  }

  text(): string {
    return Buffer.concat(this.chunks).subarray(-this.size).toString('utf8');
  }
}

/** The first connection on a fresh unix socket at `path`; the server stops listening once it has it. */
function listenOnce(path: string, servers: Server[]): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      server.close();
      resolve(socket);
    });
    servers.push(server);
    server.once('error', reject);
    server.listen(path);
  });
}

interface Watched {
  plan: SandboxPlan;
  io: RunIo;
  terminal: CallerTerminal | null;
  cgroup: CgroupPlan;
  child: ChildProcess;
  ctl: Socket;
  stdin: Socket;
  stdout: Socket;
  stderr: Socket;
  watchdog: GuestWatchdog;
  console: () => string;
  fileServerLog: () => string;
  qemuErrors: () => string;
}

function watch(w: Watched): Promise<RunEnd> {
  return new Promise((resolve) => {
    let ended: RunEnd | null = null;
    let reported: RunEnd | null = null;
    const endVm = (end: RunEnd): void => {
      ended ??= end;
      killCgroup(w.cgroup);
    };
    const memory = watchWholeSandboxOom(w.cgroup, 'the VM used all of its memory (the host sees one QEMU: the whole VM ends)', (event) => {
      w.io.onMemoryEvent?.(event);
      endVm({ reason: 'oom' });
    });
    const stopWatching = watchTimeoutAndAbort(w.plan.policy.timeouts.runMs, w.io.signal, endVm);

    const reader = new RecordReader();
    w.ctl.on('data', (chunk: Buffer) => {
      let records: ChannelRecord[];
      try {
        records = reader.push(chunk);
      } catch (error) {
        return endVm(setupEnd((error as BrigError).message));
      }
      for (const [type, ...fields] of records) {
        if (type === 'alive' && fields.length === 0) w.watchdog.heard();
        else if (type === 'exit' && fields.length === 3 && fields.every((field) => /^\d{1,15}$/.test(field)) && Number(fields[0]) < 256) {
          reported ??= { reason: 'exit', exitCode: Number(fields[0]) };
          // `hold`: the guest stays up until brig has read all of the output it counted, then brig says `poweroff`.
          owed = [Number(fields[1]), Number(fields[2])];
          settle();
        } else if (type === 'error') {
          reported ??= setupEnd(`the VM's init: ${(fields[0] ?? '').slice(0, 500)}`);
          w.ctl.write(encodeRecord(['poweroff']));
        } else return endVm(setupEnd(`the VM's init sent an unknown record '${type.slice(0, 40)}'`));
      }
    });
    w.ctl.on('error', () => {});
    // With the count of bytes sent: the ports are separate queues, and the init closes the command's stdin only once it has them all.
    const sendEof = (sent: number): boolean => w.ctl.write(encodeRecord(['eof', String(sent)]));
    const stopInput = w.terminal ? w.terminal.relay(w.stdin, sendEof, (size) => w.ctl.write(encodeRecord(['winsize', String(size.columns), String(size.rows)]))) : relayInput(w.io, w.stdin, sendEof);
    // What the guest's output ports carried so far, against what the exit record says they carried in all.
    const received = [0, 0];
    let owed: [number, number] | null = null;
    const settle = (): void => {
      if (owed && received[0] === owed[0] && received[1] === owed[1]) {
        owed = null;
        w.ctl.write(encodeRecord(['poweroff']));
      }
    };
    const counted = (index: 0 | 1) => (bytes: number): void => {
      received[index] = (received[index] ?? 0) + bytes;
      settle();
    };
    const write = (index: 1 | 2): Output => w.terminal ?? { write: callerOutput(w.io, index) };
    const outputs = [relayOutput(write(1), w.stdout, counted(0)), relayOutput(write(2), w.stderr, counted(1))];

    w.child.on('close', () => {
      void Promise.all(outputs).then(() => {
        stopInput();
        stopWatching();
        memory.close();
        if (ended) return resolve(ended);
        if (reported) return resolve(reported);
        const console = w.console();
        if (w.watchdog.hung) return resolve({ reason: 'setup', code: 'BRIG_VM_HUNG', message: `${w.watchdog.hung}: ${lastLines(console) || 'the console is empty'}`, hint: HUNG_HINT });
        // kill-sandbox: the guest panics at its memory limit (guest.ts), which ends the VM.
        if (/Kernel panic - not syncing: (Out of memory|System is deadlocked on memory)/.test(console)) {
          w.io.onMemoryEvent?.({ time: new Date().toISOString(), action: 'kill-sandbox', pid: null, hostPid: null, command: null, rssBytes: null, main: false, reason: "the VM used all of its memory (its kernel's OOM ends the whole VM: onOutOfMemory kill-sandbox)" });
          return resolve({ reason: 'oom' });
        }
        resolve(setupEnd(`the VM ended before its command did: ${lastLines(w.qemuErrors()) || lastLines(console) || lastLines(w.fileServerLog()) || 'no message'}`));
      });
    });
  });
}

function setupEnd(message: string): RunEnd {
  return { reason: 'setup', code: 'BRIG_VM_SETUP', message, hint: "the guest console's last lines and QEMU's errors are quoted (BRIG_VM_DEBUG=1 shows the whole boot); `brig run --tier vm --dry-run` prints QEMU's command line" };
}

function setupError(message: string): BrigError {
  return new BrigError('BRIG_VM_SETUP', message, "`brig tiers` says what the vm tier needs; `brig run --tier vm --dry-run` prints QEMU's command line");
}

/** The caller's stdin into the guest's port; `ended` with the byte count once it has all been sent. Returns what stops reading it. */
function relayInput(io: RunIo, port: Socket, ended: (sent: number) => void): () => void {
  port.on('error', () => {});
  const stop = readCallerInput(io, port, ended);
  if (!stop) ended(0);
  return stop ?? (() => {});
}

/** Where output goes: a write that returns false when the caller is behind, and then says when it has caught up. */
interface Output {
  write(chunk: Buffer): boolean | void;
  onDrain?(resume: () => void): void;
}

/**
 * A port of the command's output to the caller, each chunk's size told to
 * `count`. A caller that is behind pauses the port, so a guest that writes
 * without end waits in the guest, not in brig's memory. Resolves when QEMU
 * closes it.
 */
function relayOutput(output: Output, port: Socket, count: (bytes: number) => void): Promise<void> {
  port.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (output.write(chunk) === false && output.onDrain) {
      port.pause();
      output.onDrain(() => port.resume());
    }
  });
  return new Promise((resolve) => {
    port.once('close', () => resolve());
    port.on('error', () => {});
  });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ').slice(0, 600);
}

/**
 * brig run on a terminal: the CLI hands over its pty's slave (cli/terminal.ts),
 * and the guest makes a terminal of its own for the command (the init's
 * `tty`). The slave is reopened (the CLI closes its copy once the VM starts)
 * and put in raw mode, so that only the guest's line discipline acts on the
 * bytes; its size is read every 250 ms and sent as `winsize` when it
 * changes, because a resize signals the slave's foreground process group,
 * never brig.
 */
interface CallerTerminal {
  size(): TerminalSize;
  /** The caller's keys into the guest's terminal, and its size as it changes; returns what stops both. */
  relay(port: Socket, ended: (sent: number) => void, resized: (size: TerminalSize) => void): () => void;
  write(chunk: Buffer): boolean;
  onDrain(resume: () => void): void;
  /** Once what was written has gone out (2 s at most: a caller that stopped reading is not waited for). */
  close(): Promise<void>;
}

const RESIZE_POLL_MS = 250;

function callerTerminal(io: RunIo): CallerTerminal {
  const slave = io.stdio[0];
  if (typeof slave !== 'number') throw new BrigError('BRIG_INTERNAL', 'a terminal run without its terminal', 'this is a bug in brig: plan.tty comes with the slave as stdio');
  const input = new ReadStream(openSync(`/proc/self/fd/${slave}`, 'r+'));
  const output = new WriteStream(openSync(`/proc/self/fd/${slave}`, 'r+'));
  input.setRawMode(true);
  // getWindowSize() answers what the stream last heard on a SIGWINCH, which brig never gets for this terminal:
  // _refreshSize asks the kernel (TIOCGWINSZ).
  const refresh = (output as unknown as { _refreshSize(): void })._refreshSize.bind(output);
  const size = (): TerminalSize => {
    refresh();
    return { columns: output.columns, rows: output.rows };
  };
  return {
    size,
    relay(port, ended, resized) {
      port.on('error', () => {});
      let sent = 0;
      input.on('data', (chunk: Buffer) => (sent += chunk.length));
      input.once('end', () => ended(sent));
      // Piped: a guest that stops reading holds the keys back here, not in brig's memory.
      input.pipe(port, { end: false });
      let last = size();
      const poll = setInterval(() => {
        const now = size();
        if (now.columns === last.columns && now.rows === last.rows) return;
        last = now;
        resized(now);
      }, RESIZE_POLL_MS);
      return () => {
        clearInterval(poll);
        input.unpipe(port);
        input.pause();
      };
    },
    write: (chunk) => output.write(chunk),
    onDrain: (resume) => void output.once('drain', resume),
    async close() {
      input.destroy();
      await new Promise<void>((resolve) => {
        output.end(resolve);
        setTimeout(resolve, 2000).unref();
      });
      // Its last holders gone, the CLI's master reads EIO: the end of the output.
      output.destroy();
    },
  };
}
