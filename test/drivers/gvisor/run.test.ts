import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { gvisorDriver } from '../../../src/drivers/gvisor/index.ts';
import { cgroupPids, recordsDir, sweepLeftovers } from '../../../src/drivers/host/index.ts';
import { spawn } from 'node:child_process';
import { allowHosts, denySyscalls, memory, network, timeout } from '../../../src/policy/index.ts';
import { createServer as createHttpServer } from 'node:http';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import brigSpawn from 'brig-spawn';
import { EGRESS_PORT, EGRESS_SOCKET_NAME } from '../../../src/protocol/index.ts';
import { REPO } from '../../helpers/envd.ts';
import type { RunEnd, RunIo } from '../../../src/drivers/index.ts';
import type { SandboxPlan } from '../../../src/drivers/plan/index.ts';
import { fixturePlan, fixturePlanWith, tempWorkspace, USER_UID } from './plan-fixture.ts';

const status = gvisorDriver.status();
const skip = status.available ? false : `gVisor is unavailable here: ${status.detail}`;

async function run(plan: SandboxPlan, io: Partial<RunIo> = {}): Promise<{ end: RunEnd; output: string }> {
  let output = '';
  const end = await gvisorDriver.run(plan, { stdio: ['ignore', 'ignore', 'ignore'], output: (chunk) => (output += chunk.toString()), ...io });
  return { end, output };
}

async function eventually(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** What a run leaves behind on the host: nothing, once it resolved. */
function assertNothingLeft(plan: SandboxPlan): void {
  for (const dir of plan.limits.cgroup.dirs) assert.equal(existsSync(dir), false, `cgroup ${dir} is left`);
  assert.equal(existsSync(`${recordsDir()}/${plan.id}.json`), false, 'the record is left');
  const runs = `${recordsDir().replace(/\/jails$/, '')}/gvisor`;
  assert.equal(existsSync(`${runs}/${plan.id}`), false, 'the run directory (bundle, runsc state) is left');
}

describe('the gVisor tier in the foreground', { skip }, () => {
  let work: ReturnType<typeof tempWorkspace>;
  before(() => {
    work = tempWorkspace();
  });
  after(() => work.remove());

  test('exit codes and output come back from the command', async () => {
    const plan = fixturePlan(work.dir, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 7']);
    const { end, output } = await run(plan);
    assert.deepEqual(end, { reason: 'exit', exitCode: 7 });
    assert.match(output, /out/);
    assert.match(output, /err/);
    assertNothingLeft(plan);
  });

  test('output into a file lands where the file stands, after what it holds (gVisor alone writes it from offset 0)', async () => {
    const log = join(work.dir, 'out.log');
    writeFileSync(log, 'before\n');
    // As a shell's `> log` after an earlier command: a plain (not O_APPEND) descriptor whose offset is past what was written.
    const fd = openSync(log, 'r+');
    try {
      readFileSync(fd);
      const end = await gvisorDriver.run(fixturePlan(work.dir, ['/bin/sh', '-c', 'echo out; echo err >&2']), { stdio: ['ignore', fd, fd] });
      assert.deepEqual(end, { reason: 'exit', exitCode: 0 });
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(log, 'utf8'), 'before\nout\nerr\n');
  });

  test('true exits 0', async () => {
    const plan = fixturePlan(work.dir, ['true']);
    assert.deepEqual((await run(plan)).end, { reason: 'exit', exitCode: 0 });
  });

  test('the command runs as the sandbox user, in the workspace, with the plan hostname and env', async () => {
    const plan = fixturePlan(work.dir, ['/bin/sh', '-c', 'id -u; id -g; pwd; hostname; echo $HOME; cd && touch in-home && echo home-writable']);
    const { output } = await run(plan);
    assert.deepEqual(output.trim().split('\n'), [String(USER_UID), String(USER_UID), work.dir, 'brig', plan.identity.home, 'home-writable']);
  });

  test('the workspace is written, and its files keep the host owner', async () => {
    const plan = fixturePlan(work.dir, ['/bin/sh', '-c', 'echo hello > made.txt && mkdir -p sub && echo x > sub/inner']);
    assert.deepEqual((await run(plan)).end, { reason: 'exit', exitCode: 0 });
    for (const path of ['made.txt', 'sub', 'sub/inner']) {
      const stats = statSync(`${work.dir}/${path}`);
      assert.equal(stats.uid, USER_UID, `${path} uid`);
      assert.equal(stats.gid, USER_UID, `${path} gid`);
    }
  });

  test('coreutils\' stat family works inside (brig-statx.so drops the AT_NO_AUTOMOUNT this runsc refuses)', async () => {
    const plan = fixturePlan(work.dir, ['/bin/sh', '-c', 'ls / >/dev/null && echo ls-ok; touch f && stat -c %u f; cp f g && echo cp-ok']);
    const { end, output } = await run(plan);
    assert.deepEqual(end, { reason: 'exit', exitCode: 0 }, output);
    assert.deepEqual(output.trim().split('\n'), ['ls-ok', String(USER_UID), 'cp-ok']);
  });

  test('nothing else of the host is writable', async () => {
    const script = 'for p in /usr/x /etc/x /x /bin/x /proc/sys/kernel/hostname /etc/passwd; do (echo 1 > $p) 2>/dev/null && echo WROTE $p; done; echo done';
    const { output } = await run(fixturePlan(work.dir, ['/bin/sh', '-c', script]));
    assert.equal(output.trim(), 'done');
    assert.equal(existsSync('/x'), false);
  });

  test('/etc/shadow, a masked directory and /proc\'s dangerous files are out of reach', async () => {
    const script = [
      'test -s /etc/shadow && echo SHADOW',
      'ls -A /etc/ssl/private 2>/dev/null | grep -q . && echo PRIVATE',
      'for f in /proc/kcore /proc/keys /proc/sysrq-trigger /proc/kallsyms /proc/timer_list /proc/kmsg; do test -e $f && echo PRESENT $f; done',
      'echo done',
    ].join('; ');
    const { output } = await run(fixturePlan(work.dir, ['/bin/sh', '-c', script]));
    assert.equal(output.trim(), 'done');
  });

  test('the sandbox has its own /dev: no host device beyond the usual few', async () => {
    const { output } = await run(fixturePlan(work.dir, ['/bin/sh', '-c', 'test -c /dev/null && test -c /dev/urandom && echo ok; test -e /dev/sda && echo DISK; test -e /dev/mem && echo MEM; true']));
    assert.equal(output.trim(), 'ok');
  });

  test('no network: only loopback', async () => {
    const script = 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "';
    const { output } = await run(fixturePlan(work.dir, ['/bin/sh', '-c', script]));
    assert.deepEqual(output.trim().split('\n'), ['lo']);
    const fetch = `require('net').connect(53, '1.1.1.1').on('error', (e) => { console.log(e.code); process.exit(0) }).on('connect', () => console.log('CONNECTED'))`;
    const { output: connect } = await run(fixturePlan(work.dir, ['node', '-e', fetch]));
    assert.doesNotMatch(connect, /CONNECTED/);
  });

  test('allowlist: the command reaches the host only through the egress bridge (brig-relay inside, the host socket bound in)', async () => {
    const socketDir = mkdtempSync(join(tmpdir(), 'brig-gvisor-egress-'));
    const proxy = createHttpServer((request, response) => response.end(`via-egress ${request.url}`));
    try {
      await new Promise<void>((resolve) => proxy.listen(`${socketDir}/${EGRESS_SOCKET_NAME}`, resolve));
      // The sandbox's user connects: it must reach and write the socket, as the egress proxy's own is made.
      chmodSync(socketDir, 0o755);
      chmodSync(`${socketDir}/${EGRESS_SOCKET_NAME}`, 0o777);
      const egress = { socketDir, nodeDir: `${REPO}/dist/inside`, relay: brigSpawn.relayPath };
      const get = `require('http').get('http://127.0.0.1:${EGRESS_PORT}/probe', (r) => r.pipe(process.stdout))`;
      const plan = fixturePlanWith({ egress }, work.dir, ['node', '-e', get], network('allowlist'), allowHosts('example.com'));
      const { end, output } = await run(plan);
      assert.deepEqual(end, { reason: 'exit', exitCode: 0 }, output);
      assert.match(output, /via-egress \/probe/);
    } finally {
      proxy.close();
      rmSync(socketDir, { recursive: true, force: true });
    }
  });

  test('the policy\'s extra syscall denials hold inside (linux.seccomp, applied by the Sentry)', async () => {
    const script = "try { require('fs').mkdirSync('/tmp/made'); console.log('MADE') } catch (e) { console.log(e.code) }";
    const plan = fixturePlan(work.dir, ['node', '-e', script], denySyscalls('mkdir', 'mkdirat'));
    const { output } = await run(plan);
    assert.equal(output.trim(), 'EPERM');
    const { output: allowed } = await run(fixturePlan(work.dir, ['node', '-e', script]));
    assert.equal(allowed.trim(), 'MADE');
  });

  test('describe shows runsc\'s command line and the OCI config', () => {
    const plan = fixturePlan(work.dir, ['true'], denySyscalls('mkdir'));
    const { lines, json } = gvisorDriver.describe(plan);
    const argv = json.argv as string[];
    assert.ok(argv.includes('--network=none') && argv.includes('--oci-seccomp') && argv.includes('run'), argv.join(' '));
    const config = json.config as { process: { args: string[]; user: { uid: number } }; root: { readonly: boolean }; mounts: Array<{ destination: string; type: string }> };
    assert.deepEqual(config.process.args.slice(-2), ['--', 'true'], 'the command, behind brig\'s init');
    assert.equal(config.process.user.uid, USER_UID);
    assert.equal(config.root.readonly, true);
    assert.ok(config.mounts.some((mount) => mount.destination === work.dir && mount.type === 'bind'));
    assert.ok(lines.some((line) => line.startsWith('runsc: ')));
  });

  test('the timeout ends the sandbox', async () => {
    const plan = fixturePlan(work.dir, ['sleep', '60'], timeout(1500));
    assert.deepEqual((await run(plan)).end, { reason: 'timeout' });
    assertNothingLeft(plan);
  });

  test('aborting ends the sandbox with the abort\'s signal', async () => {
    const plan = fixturePlan(work.dir, ['sleep', '60']);
    const abort = new AbortController();
    const ran = run(plan, { signal: abort.signal, started: () => setTimeout(() => abort.abort('SIGINT'), 1000) });
    assert.deepEqual((await ran).end, { reason: 'signal', signal: 'SIGINT' });
    assertNothingLeft(plan);
  });

  test('at the memory limit the whole sandbox ends (oom)', async () => {
    const plan = fixturePlan(work.dir, ['node', '-e', 'const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))'], memory(384));
    const events: unknown[] = [];
    const { end } = await run(plan, { onMemoryEvent: (event) => events.push(event) });
    assert.deepEqual(end, { reason: 'oom' });
    assert.equal(events.length, 1);
    assertNothingLeft(plan);
  });

  test('a bind source that became a symlink is refused before runsc starts', async () => {
    const plan = fixturePlan(work.dir, ['true']);
    const planted = `${work.dir}/planted`;
    symlinkSync('/root', planted);
    try {
      plan.mounts.push({ kind: 'bind', source: planted, target: '/mnt', writable: false, field: 'filesystem.readOnly' });
      await assert.rejects(gvisorDriver.run(plan, { stdio: ['ignore', 'ignore', 'ignore'] }), { code: 'BRIG_PATH_SYMLINK' });
      assertNothingLeft(plan);
    } finally {
      rmSync(planted);
    }
  });

  test('a program that cannot be run inside ends with 127, as a shell says it (pid 1 is brig\'s init)', async () => {
    // The planner refuses a command it cannot find; one that vanished since (or a plan made by hand) reaches the sandbox.
    const plan = { ...fixturePlan(work.dir, ['true']), command: ['/no/such/program'] };
    const { end, output } = await run(plan);
    assert.deepEqual(end, { reason: 'exit', exitCode: 127 });
    assert.match(output, /brig-init: \/no\/such\/program/);
    assertNothingLeft(plan);
  });

  test('the command is not pid 1: orphans are reaped, its signals act, a signal\'s end is 128 + its number', async () => {
    const script = 'echo $$; sleep 300 & orphan=$!; disown; echo $orphan; kill -TERM $$';
    const { end, output } = await run(fixturePlan(work.dir, ['/bin/bash', '-c', script]));
    assert.deepEqual(end, { reason: 'exit', exitCode: 143 });
    assert.notEqual(output.trim().split('\n')[0], '1');
    // A subshell outlives its parent, is reparented to pid 1 and ends. Node, like envd, reaps only its own
    // children: were it pid 1, the subshell would stay a zombie.
    const zombies = "require('child_process').spawnSync('sh', ['-c', '(sleep 0.2) & :']); setTimeout(() => console.log(require('child_process').execSync('ps -eo stat=').toString().split('\\n').filter((stat) => stat.startsWith('Z')).length), 1500)";
    assert.equal((await run(fixturePlan(work.dir, ['node', '-e', zombies]))).output.trim(), '0');
  });

  test('a mount point missing inside a bound host directory is refused (runsc would make it on the host)', async () => {
    const plan = fixturePlan(work.dir, ['true']);
    plan.mounts.push({ kind: 'tmpfs', target: '/usr/no-such-dir-brig', sizeBytes: 4096, mode: 0o755 });
    await assert.rejects(gvisorDriver.run(plan, { stdio: ['ignore', 'ignore', 'ignore'] }), { code: 'BRIG_GVISOR_UNSUPPORTED' });
    assert.equal(existsSync('/usr/no-such-dir-brig'), false);
    assertNothingLeft(plan);
  });

  test('a launcher killed with SIGKILL takes its sandbox along, and the next run sweeps what it held', async () => {
    const launcher = spawn(process.execPath, ['--import', 'tsx', `${import.meta.dirname}/launcher.ts`, work.dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => launcher.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    const { id, cgroup } = JSON.parse(line) as { id: string; cgroup: string[] };
    // The command runs: the Sentry's ptrace stubs are in the sandbox's cgroup.
    await eventually(() => cgroupPids(cgroup[0] as string).length > 2);
    const exited = new Promise((resolve) => launcher.once('exit', resolve));
    launcher.kill('SIGKILL');
    await exited;
    // runsc run dies of its parent-death signal, and takes the gofer and the Sentry with it.
    await eventually(() => cgroupPids(cgroup[0] as string).length === 0);
    assert.ok(existsSync(`${recordsDir()}/${id}.json`), 'the record outlives its owner until the next sweep');
    assert.ok((await sweepLeftovers()).includes(id));
    for (const dir of cgroup) assert.equal(existsSync(dir), false);
    assert.equal(existsSync(`${recordsDir().replace(/\/jails$/, '')}/gvisor/${id}`), false);
  });

  test('nothing is left in the run directory after all of the above', () => {
    const runs = `${recordsDir().replace(/\/jails$/, '')}/gvisor`;
    const mine = existsSync(runs) ? readdirSync(runs).filter((name) => name.startsWith(`gv-${process.pid}-`)) : [];
    assert.deepEqual(mine, []);
  });
});
