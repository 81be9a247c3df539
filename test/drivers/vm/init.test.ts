import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import brigSpawn from 'brig-spawn';

/**
 * brig-vm-init (native/spawn/vm-init.c), pid 1 of a VM tier guest, booted for
 * real: Debian's cloud kernel under QEMU's microvm on TCG, an initramfs made
 * here (brig-vm-init as /init, the virtio-serial modules, and a static probe
 * program to run), the four ports on unix sockets this test listens on. The
 * root is the initramfs itself (`root initramfs`): there is no virtiofsd here.
 * Each test is one boot, a few seconds on TCG; waits have no time limit.
 */

const INIT = join(brigSpawn.execPath, '..', 'brig-vm-init');
const CACHE = `${process.env.BRIG_TEST_CACHE ?? '/var/tmp/brig-test-cache'}/vm-init-test`;
const QEMU = '/usr/bin/qemu-system-x86_64';
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
// In load order: each after what its .modinfo `depends=` names.
const MODULES = [
  'drivers/virtio/virtio_ring.ko',
  'drivers/virtio/virtio.ko',
  'drivers/virtio/virtio_mmio.ko',
  'drivers/char/virtio_console.ko',
  'fs/fuse/fuse.ko',
  'fs/fuse/virtiofs.ko',
];
const PORTS = ['ctl', 'stdin', 'stdout', 'stderr'] as const;

/**
 * The host's TSC rate for the guest's command line. Under TCG the guest reads
 * the host's TSC, and microvm has no PIT, HPET or PM timer to calibrate it
 * against: without tsc_early_khz the kernel marks the TSC unstable and hangs.
 */
function tscKhz(): number {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : 2_000_000;
}

const skip = !existsSync(QEMU) ? 'qemu-system-x86_64 is not installed' : !existsSync(INIT) ? 'brig-vm-init is not built' : false;

/** Debian's cloud kernel and the modules, downloaded once into CACHE/kernel (built aside, renamed into place). */
function guestKernel(): { vmlinuz: string; modules: string[] } {
  const dir = join(CACHE, 'kernel');
  const result = { vmlinuz: join(dir, 'vmlinuz'), modules: MODULES.map((path) => join(dir, path.split('/').pop()!)) };
  if ([result.vmlinuz, ...result.modules].every((file) => existsSync(file))) return result;
  rmSync(dir, { recursive: true, force: true }); // an older set
  mkdirSync(CACHE, { recursive: true });
  const work = mkdtempSync(join(CACHE, 'download-'));
  try {
    const depends = sh('apt-cache', ['depends', 'linux-image-cloud-amd64'], work);
    const name = /Depends: (linux-image-\S+)/.exec(depends)?.[1];
    assert.ok(name, `no kernel package in: ${depends}`);
    sh('apt-get', ['download', name], work);
    const deb = readdirSync(work).find((file) => file.endsWith('.deb'))!;
    sh('dpkg-deb', ['-x', deb, 'root'], work);
    const boot = join(work, 'root', 'boot');
    const version = readdirSync(boot).find((file) => file.startsWith('vmlinuz-'))!.slice('vmlinuz-'.length);
    mkdirSync(join(work, 'kernel'));
    copyFileSync(join(boot, `vmlinuz-${version}`), join(work, 'kernel', 'vmlinuz'));
    for (const path of MODULES) copyFileSync(join(work, 'root', 'lib', 'modules', version, 'kernel', path), join(work, 'kernel', path.split('/').pop()!));
    renameSync(join(work, 'kernel'), dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return result;
}

function sh(file: string, args: string[], cwd: string): string {
  const result = spawnSync(file, args, { cwd, encoding: 'utf8' });
  assert.equal(result.status, 0, `${file} ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** The program the guest runs: says what it was given, and does what its first argument asks. */
const PROBE_C = String.raw`
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
extern char **environ;

static void echo_stdin(void) {
  char buffer[4096];
  ssize_t got;
  fflush(stdout);
  while ((got = read(0, buffer, sizeof buffer)) > 0) write(1, buffer, (size_t)got);  // as it comes: the host may wait for it
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (!strcmp(mode, "report")) {
    gid_t groups[64];
    int count = getgroups(64, groups);
    char cwd[256] = "", host[256] = "";
    struct rlimit files;
    getcwd(cwd, sizeof cwd);
    gethostname(host, sizeof host);
    getrlimit(RLIMIT_NOFILE, &files);
    printf("uid=%d euid=%d gid=%d egid=%d groups=", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
    for (int i = 0; i < count; i++) printf(i ? ",%d" : "%d", (int)groups[i]);
    printf("\ncwd=%s\nhostname=%s\nnofile=%llu:%llu\n", cwd, host, (unsigned long long)files.rlim_cur, (unsigned long long)files.rlim_max);
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **entry = environ; *entry; entry++) printf("env=%s\n", *entry);
    char line[512];
    FILE *mounts = fopen("/proc/mounts", "r");
    while (mounts && fgets(line, sizeof line, mounts)) printf("mount=%s", line);
    printf("stdin=");
    fflush(stdout);
    echo_stdin();
    printf("|end\n");
    fputs("to stderr\n", stderr);
    return 0;
  }
  if (!strcmp(mode, "flood")) {  // flood BYTES CODE: an orphan keeps stdout open; BYTES to stdout, BYTES/16 to stderr
    if (fork() == 0) for (;;) pause();
    long bytes = atol(argv[2]);
    char chunk[1000];
    for (long written = 0; written < bytes; written += 1000) {
      for (int i = 0; i < 1000; i++) chunk[i] = (char)('a' + (written / 1000 + i) % 26);
      fwrite(chunk, 1, 1000, stdout);
      if (written % 4000 == 0) fwrite("E", 1, 1, stderr), fwrite(chunk, 1, 249, stderr);
    }
    fflush(stdout);
    return atoi(argv[3]);
  }
  if (!strcmp(mode, "raise")) {  // raise N after stdin's end
    echo_stdin();
    fflush(stdout);
    raise(atoi(argv[2]));
    return 99;
  }
  if (!strcmp(mode, "service")) {  // service N: a line from fd N comes back on it as got:LINE
    int fd = atoi(argv[2]);
    char line[256];
    size_t length = 0;
    while (length < sizeof line - 1 && read(fd, line + length, 1) == 1 && line[length] != '\n') length++;
    line[length] = '\0';
    dprintf(fd, "got:%s\n", line);
    return 0;
  }
  if (!strcmp(mode, "wait")) {  // echo stdin, then wait for a signal
    echo_stdin();
    puts("stdin closed");
    fflush(stdout);
    for (;;) pause();
  }
  fprintf(stderr, "probe: unknown mode %s\n", mode);
  return 2;
}
`;

/** The newc cpio format (magic 070701), as the kernel unpacks an initramfs: directories and files, mtime 0. */
function cpio(entries: { path: string; mode: number; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  const push = (chunk: Buffer): void => {
    parts.push(chunk);
    length += chunk.length;
    const pad = (4 - (length % 4)) % 4;
    if (pad) {
      parts.push(Buffer.alloc(pad));
      length += pad;
    }
  };
  let inode = 1;
  for (const { path, mode, data } of [...entries, { path: 'TRAILER!!!', mode: 0, data: undefined }]) {
    const size = data?.length ?? 0;
    const fields = [inode++, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, Buffer.byteLength(path) + 1, 0];
    push(Buffer.concat([Buffer.from('070701' + fields.map((field) => field.toString(16).padStart(8, '0')).join('')), Buffer.from(`${path}\0`)]));
    if (data) push(data);
  }
  return Buffer.concat(parts);
}

/** One record: a decimal field count, NUL, then each field NUL-terminated. */
const record = (...fields: string[]): Buffer => Buffer.from(`${fields.length}\0${fields.map((field) => `${field}\0`).join('')}`);

/** Whole records out of a stream of bytes; what is left over stays in `rest`. */
function parseRecords(data: Buffer): { records: string[][]; rest: Buffer } {
  const records: string[][] = [];
  let at = 0;
  for (;;) {
    const nul = data.indexOf(0, at);
    if (nul < 0) break;
    const count = Number(data.subarray(at, nul).toString());
    const fields: string[] = [];
    let next = nul + 1;
    while (fields.length < count) {
      const end = data.indexOf(0, next);
      if (end < 0) break;
      fields.push(data.subarray(next, end).toString());
      next = end + 1;
    }
    if (fields.length < count) break;
    records.push(fields);
    at = next;
  }
  return { records, rest: data.subarray(at) };
}

interface Guest {
  /** Records from brig.ctl, as they came. */
  records: string[][];
  stdout: Buffer;
  stderr: Buffer;
  send(...fields: string[]): void;
  /** The host's ends of brig.stdin and brig.stdout. */
  stdin: Socket;
  stdoutSocket: Socket;
  /** The host's end of brig.service, when the boot has it; what came on it. */
  service: Socket | null;
  serviceData: Buffer;
  /** Resolves once stdout holds `text`. */
  stdoutHas(text: string): Promise<void>;
  serviceHas(text: string): Promise<void>;
  /** Resolves with the first record of this type from brig.ctl. */
  recordCame(type: string): Promise<string[]>;
  /** Resolves once stdout and stderr hold this many bytes each. */
  outputHas(stdoutBytes: number, stderrBytes: number): Promise<void>;
}

interface Boot {
  records: string[][];
  stdout: string;
  stderr: string;
  qemu: { code: number | null; signal: NodeJS.Signals | null };
  console: string;
  /** Milliseconds from QEMU's start to the first record, and to QEMU's end. */
  firstRecordMs: number | null;
  endMs: number;
}

let initramfs = '';
let kernel = '';
let scratch = '';

/**
 * Boots the guest with `config` (records up to and with `end`); `drive` talks
 * to it while it runs. With `virtiofs`, virtiofsd serves that directory under
 * the tag `brigroot` (vhost-user: guest memory shared, modern virtio-mmio).
 */
async function boot(config: Buffer[], drive: (guest: Guest) => Promise<void> = async () => {}, options: { virtiofs?: string; service?: boolean } = {}): Promise<Boot> {
  const dir = mkdtempSync(join(scratch, 'boot-'));
  const servers: Server[] = [];
  let qemu: ChildProcess | undefined;
  let virtiofsd: ChildProcess | undefined;
  try {
    // QEMU connects to each port's socket as it starts, so they listen first.
    const listening: Promise<unknown>[] = [];
    const accept = (name: (typeof PORTS)[number] | 'service'): Promise<Socket> => {
      const server = createServer();
      servers.push(server);
      listening.push(new Promise((resolve, reject) => server.once('listening', resolve).once('error', reject)));
      server.listen(join(dir, `${name}.sock`));
      return new Promise((resolve) => server.once('connection', resolve));
    };
    const connected = Promise.all([accept('ctl'), accept('stdin'), accept('stdout'), accept('stderr'), ...(options.service ? [accept('service')] : [])]);
    await Promise.all(listening);
    const started = Date.now();
    const log = join(dir, 'console.log');
    const args = ['-M', 'microvm', '-accel', 'tcg', '-cpu', 'max', '-m', '256', '-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot'];
    args.push('-kernel', kernel, '-initrd', initramfs, '-append', `console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=${tscKhz()}`, '-serial', `file:${log}`);
    if (options.virtiofs) {
      const socket = join(dir, 'virtiofs.sock');
      const daemon = spawn(VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${options.virtiofs}`, '-o', 'sandbox=chroot', '-o', 'cache=none'], { stdio: 'ignore' });
      virtiofsd = daemon;
      while (!existsSync(socket) && daemon.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 10));
      args[1] = 'microvm,memory-backend=mem';
      args.push('-global', 'virtio-mmio.force-legacy=false', '-object', 'memory-backend-memfd,id=mem,size=256M,share=on');
      args.push('-chardev', `socket,id=fs,path=${socket}`, '-device', 'vhost-user-fs-device,chardev=fs,tag=brigroot');
    }
    args.push('-device', 'virtio-serial-device');
    for (const name of options.service ? [...PORTS, 'service' as const] : PORTS) {
      args.push('-chardev', `socket,id=${name},path=${join(dir, `${name}.sock`)}`, '-device', `virtserialport,chardev=${name},name=brig.${name}`);
    }
    const child = spawn(QEMU, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    qemu = child;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const sockets = await Promise.race([connected, exited]);
    if (!Array.isArray(sockets)) assert.fail(`QEMU ended before it connected: ${JSON.stringify(sockets)}`);
    const [ctl, stdin, stdout, stderr, service] = sockets as [Socket, Socket, Socket, Socket, Socket | undefined];
    const closed = [ctl, stdin, stdout, stderr, ...(service ? [service] : [])].map((socket) => new Promise((resolve) => socket.once('close', resolve)));
    let firstRecordMs: number | null = null;
    const waiting = new Set<() => void>(); // checks to run whenever anything comes from the guest
    const until = (done: () => boolean): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (!done()) return;
          waiting.delete(check);
          resolve();
        };
        waiting.add(check);
        check();
      });
    const guest: Guest = {
      records: [],
      stdout: Buffer.alloc(0),
      stderr: Buffer.alloc(0),
      send: (...fields) => ctl.write(record(...fields)),
      stdin,
      stdoutSocket: stdout,
      service: service ?? null,
      serviceData: Buffer.alloc(0),
      stdoutHas: (text) => until(() => guest.stdout.includes(text)),
      serviceHas: (text) => until(() => guest.serviceData.includes(text)),
      recordCame: async (type) => {
        await until(() => guest.records.some((fields) => fields[0] === type));
        return guest.records.find((fields) => fields[0] === type)!;
      },
      outputHas: (stdoutBytes, stderrBytes) => until(() => guest.stdout.length >= stdoutBytes && guest.stderr.length >= stderrBytes),
    };
    let pending: Buffer = Buffer.alloc(0);
    ctl.on('data', (chunk: Buffer) => {
      const { records, rest } = parseRecords(Buffer.concat([pending, chunk]));
      pending = rest;
      if (records.length && firstRecordMs === null) firstRecordMs = Date.now() - started;
      guest.records.push(...records);
      for (const check of [...waiting]) check();
    });
    const stdoutChunks: Buffer[] = [];
    const stderrChunks: Buffer[] = [];
    stdout.on('data', (chunk: Buffer) => {
      stdoutChunks.push(chunk);
      guest.stdout = Buffer.concat(stdoutChunks);
      for (const check of [...waiting]) check();
    });
    stderr.on('data', (chunk: Buffer) => {
      stderrChunks.push(chunk);
      guest.stderr = Buffer.concat(stderrChunks);
      for (const check of [...waiting]) check();
    });
    service?.on('data', (chunk: Buffer) => {
      guest.serviceData = Buffer.concat([guest.serviceData, chunk]);
      for (const check of [...waiting]) check();
    });
    for (const socket of [stdin, ctl, ...(service ? [service] : [])]) socket.on('error', () => {}); // QEMU gone first: EPIPE on a late write
    stdin.resume(); // nothing comes this way, but its end must be read for it to close
    ctl.write(Buffer.concat(config));
    await Promise.race([drive(guest), exited]); // a guest that died early ends the drive's waits
    const qemuEnd = await exited;
    await Promise.all(closed);
    return {
      records: guest.records,
      stdout: guest.stdout.toString(),
      stderr: guest.stderr.toString(),
      qemu: qemuEnd,
      console: readFileSync(log, 'utf8'),
      firstRecordMs,
      endMs: Date.now() - started,
    };
  } finally {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
    if (virtiofsd && virtiofsd.exitCode === null && virtiofsd.signalCode === null) virtiofsd.kill('SIGKILL');
    for (const server of servers) server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The config every test starts from: the initramfs as root, the probe on PATH. */
const base = (argv: string[], ...more: Buffer[]): Buffer[] => [
  record('root', 'initramfs'),
  record('env', 'PATH=/nowhere:/'),
  ...more,
  record('argv', ...argv),
  record('end'),
];

function assertEndedByItself(result: Boot, t: TestContext): void {
  assert.deepEqual(result.qemu, { code: 0, signal: null }, `QEMU ended with ${JSON.stringify(result.qemu)}; console:\n${result.console}`);
  assert.doesNotMatch(result.console, /Kernel panic/);
  t.diagnostic(`first record after ${result.firstRecordMs} ms, QEMU gone after ${result.endMs} ms`);
}

describe('brig-vm-init booted under QEMU (microvm, TCG)', { skip }, () => {
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'brig-vm-init-'));
    const guest = guestKernel();
    kernel = guest.vmlinuz;
    writeFileSync(join(scratch, 'probe.c'), PROBE_C);
    sh('cc', ['-static', '-O2', '-o', 'probe', 'probe.c'], scratch);
    const names = guest.modules.map((path) => path.split('/').pop()!);
    const entries = [
      ...['dev', 'proc', 'sys', 'newroot', 'tmp', 'lib', 'lib/modules'].map((path) => ({ path, mode: 0o40755 })),
      { path: 'init', mode: 0o100755, data: readFileSync(INIT) },
      { path: 'probe', mode: 0o100755, data: readFileSync(join(scratch, 'probe')) },
      ...guest.modules.map((path, i) => ({ path: `lib/modules/${names[i]}`, mode: 0o100644, data: readFileSync(path) })),
      { path: 'modules.order', mode: 0o100644, data: Buffer.from(names.map((name) => `${name}\n`).join('')) },
    ];
    initramfs = join(scratch, 'initramfs.cpio');
    writeFileSync(initramfs, cpio(entries));
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  test('the command runs as the config says: argv, env and its PATH, ids, cwd, hostname, rlimits, mounts; stdin until `eof N`', async (t) => {
    const input = 'first line\nsecond, no newline';
    const result = await boot(
      base(
        ['probe', 'report', 'two words', ''],
        record('mount', 'tmpfs', 'tmpfs', '/mnt/scratch/deep', '6', 'size=1m,mode=0755'),
        record('hostname', 'brig-guest'),
        record('uid', '1000'),
        record('gid', '1001'),
        record('groups', '1001', '2000'),
        record('cwd', '/mnt/scratch/deep'),
        record('env', 'GREETING=hello world'),
        record('rlimit', 'NOFILE', '256', '512'),
      ),
      async (guest) => {
        await guest.stdoutHas('stdin=');
        guest.stdin.write(input);
        guest.send('eof', String(Buffer.byteLength(input)));
      },
    );
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '0']]);
    const lines = result.stdout.split('\n');
    assert.ok(lines.includes('uid=1000 euid=1000 gid=1001 egid=1001 groups=1001,2000'), result.stdout);
    assert.ok(lines.includes('cwd=/mnt/scratch/deep'), result.stdout);
    assert.ok(lines.includes('hostname=brig-guest'), result.stdout);
    assert.ok(lines.includes('nofile=256:512'), result.stdout);
    assert.deepEqual(
      lines.filter((line) => line.startsWith('argv[')),
      ['argv[0]=probe', 'argv[1]=report', 'argv[2]=two words', 'argv[3]='],
    );
    assert.deepEqual(
      lines.filter((line) => line.startsWith('env=')),
      ['env=PATH=/nowhere:/', 'env=GREETING=hello world'],
    );
    assert.match(result.stdout, /^mount=tmpfs \/mnt\/scratch\/deep tmpfs rw,nosuid,nodev,.*size=1024k/m);
    assert.match(result.stdout, /^mount=rootfs \/ /m); // `root initramfs`: no switch
    assert.ok(result.stdout.endsWith(`stdin=${input}|end\n`), result.stdout);
    assert.equal(result.stderr, 'to stderr\n');
  });

  test('`hold`: the exit record counts the output, the VM stays up until `poweroff`, and no byte is lost to a slow host', async (t) => {
    const bytes = 1_000_000;
    const result = await boot(base(['/probe', 'flood', String(bytes), '7'], record('hold')), async (guest) => {
      // A host that reads stdout late: QEMU holds back what the socket cannot take, and would drop it at a power-off.
      guest.stdoutSocket.pause();
      guest.send('eof');
      const [, , stdoutBytes, stderrBytes] = await guest.recordCame('exit');
      t.diagnostic(`stdout read when the exit record came: ${guest.stdout.length} bytes`);
      guest.stdoutSocket.resume();
      await guest.outputHas(Number(stdoutBytes), Number(stderrBytes));
      guest.send('poweroff');
    });
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '7', String(bytes), String(bytes / 16)]]);
    assert.equal(result.stdout.length, bytes);
    assert.equal(result.stderr.length, bytes / 16);
    for (let at = 0; at < bytes; at += 1000) {
      const expected = Array.from({ length: 1000 }, (_, i) => String.fromCharCode(97 + ((at / 1000 + i) % 26))).join('');
      if (result.stdout.slice(at, at + 1000) !== expected) assert.fail(`stdout differs at ${at}`);
    }
    assert.match(result.stderr, /^(E[a-z]{249})+$/);
  });

  test('exit 7 with stdout and stderr apart; an orphan holding stdout does not keep the VM up', async (t) => {
    const result = await boot(base(['/probe', 'flood', '8000', '7']), async (guest) => guest.send('eof'));
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '7']]);
    assert.match(result.stdout, /^[a-z]{8000}$/);
    assert.match(result.stderr, /^E[a-z]{249}E[a-z]{249}$/);
  });

  test('a command killed by a signal ends with 128 + its number; a bare `eof` closes an empty stdin', async (t) => {
    const result = await boot([...base(['/probe', 'raise', '6']), record('eof')]);
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', String(128 + 6)]]);
  });

  test('brig.stdin hanging up ends the stdin; `signal N` reaches the command', async (t) => {
    const result = await boot(base(['/probe', 'wait']), async (guest) => {
      guest.stdin.write('ping\n');
      // Not at once: QEMU drops what the guest has not read when the host hangs up.
      await guest.stdoutHas('ping\n');
      guest.stdin.end();
      await guest.stdoutHas('stdin closed\n');
      guest.send('signal', '15');
    });
    assertEndedByItself(result, t);
    assert.equal(result.stdout, 'ping\nstdin closed\n');
    assert.deepEqual(result.records, [['exit', String(128 + 15)]]);
  });

  test('`service N`: a fifth port, brig.service, is the command\'s fd N both ways; fd 3 (the inner jail\'s) is refused', async (t) => {
    const result = await boot(base(['probe', 'service', '5'], record('service', '5')), async (guest) => {
      guest.service?.write('ping\n');
      await guest.serviceHas('got:ping\n');
    }, { service: true });
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '0']]);
    const refused = await boot(base(['probe', 'service', '3'], record('service', '3')), async () => {}, { service: true });
    assert.match(refused.records[0]?.join(' ') ?? '', /^error record service: fd 3 \(4-9\)/);
  });

  test('a program that is not there: 127, and why on stderr (brig.stdin closed before the guest came up)', async (t) => {
    const result = await boot(base(['/nowhere/tool', 'arg']), async (guest) => {
      guest.stdin.end();
    });
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '127']]);
    assert.equal(result.stderr, 'brig-vm-init: cannot run /nowhere/tool: No such file or directory\n');
    assert.equal(result.stdout, '');
  });

  test('an unknown record: an `error` record (and a line on the console), and the VM powers off', async (t) => {
    const result = await boot([record('root', 'initramfs'), record('bogus', 'x'), record('argv', '/probe'), record('end')]);
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['error', 'unknown record from the host: bogus']]);
    assert.match(result.console, /brig-vm-init: unknown record from the host: bogus/);
  });

  test('a cwd the user cannot enter: an `error` record before anything runs', async (t) => {
    const result = await boot(base(['/probe', 'report'], record('uid', '1000'), record('cwd', '/nowhere')));
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['error', 'cannot enter /nowhere: No such file or directory']]);
    assert.equal(result.stdout, '');
  });
  test('a virtiofs root: mounted, switched to, the mounts made inside it; the initramfs and its mounts out of sight', { skip: existsSync(VIRTIOFSD) ? false : 'no virtiofsd' }, async (t) => {
    const root = mkdtempSync(join(scratch, 'root-'));
    chmodSync(root, 0o755); // the user runs the command: / must be open to it
    for (const path of ['bin', 'proc', 'dev']) mkdirSync(join(root, path));
    copyFileSync(join(scratch, 'probe'), join(root, 'bin', 'probe'));
    const input = 'through the root\n';
    const result = await boot(
      [
        record('root', 'brigroot'),
        record('mount', 'proc', 'proc', '/proc', '14', ''), // MS_NOSUID | MS_NODEV | MS_NOEXEC
        record('mount', 'tmpfs', 'tmpfs', '/mnt/scratch', '6', 'mode=0755'),
        record('uid', '1000'),
        record('cwd', '/mnt/scratch'),
        record('env', 'PATH=/bin'),
        record('argv', 'probe', 'report'),
        record('hold'), // the output's count comes from debugfs, unmounted with the initramfs's /sys
        record('end'),
      ],
      async (guest) => {
        guest.stdin.write(input);
        guest.send('eof', String(input.length));
        const [, , stdoutBytes, stderrBytes] = await guest.recordCame('exit');
        await guest.outputHas(Number(stdoutBytes), Number(stderrBytes));
        guest.send('poweroff');
      },
      { virtiofs: root },
    );
    assertEndedByItself(result, t);
    assert.deepEqual(result.records, [['exit', '0', String(result.stdout.length), String(result.stderr.length)]]);
    const mounts = result.stdout.split('\n').filter((line) => line.startsWith('mount='));
    assert.deepEqual(
      mounts.map((line) => line.split(' ').slice(0, 3).join(' ')),
      ['mount=brigroot / virtiofs', 'mount=proc /proc proc', 'mount=tmpfs /mnt/scratch tmpfs'],
    );
    assert.match(mounts[0]!, / rw,nosuid,nodev[, ]/);
    assert.ok(result.stdout.includes('uid=1000 euid=1000 gid=0 egid=0 groups=\ncwd=/mnt/scratch\n'), result.stdout);
    assert.ok(result.stdout.endsWith(`stdin=${input}|end\n`), result.stdout);
    assert.ok(existsSync(join(root, 'mnt', 'scratch')), 'the mount point was made in the shared root');
  });
});
