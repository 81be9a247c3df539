import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vmDriver } from '../../../src/drivers/vm/index.ts';
import { cgroupPids, recordsDir, sweepLeftovers } from '../../../src/drivers/host/index.ts';
import { planSandbox, type RunEnd, type RunIo, type SandboxPlan } from '../../../src/drivers/index.ts';
import { buildPolicy, denySyscalls, memory, network, resolvePolicy, timeout, workspace, type PolicyChange } from '../../../src/policy/index.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BRIG, eventually } from '../../helpers/brig.ts';
import { withEnv } from '../../helpers/env.ts';

/**
 * The vm tier in the foreground, on whatever this machine has (TCG here: a
 * few seconds a boot). What every tier must hold is in the shared matrix
 * (test/drivers/jail/jail.test.ts, setuid.test.ts); this is what is the VM's own.
 */
const status = vmDriver.status();
const skip = status.available ? false : `the vm tier cannot run here: ${status.detail}`;
const USER = 1000;

function plan(work: string, command: string[], ...changes: PolicyChange[]): SandboxPlan {
  const policy = resolvePolicy(buildPolicy(workspace(work), memory(512), ...changes), { cwd: work, home: '/root' });
  return planSandbox(policy, command, { uid: 0, gid: 0, home: '/root', cwd: work, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, { tty: false, id: `vm-${process.pid}-${Math.random().toString(16).slice(2, 8)}` });
}

async function run(sandbox: SandboxPlan, io: Partial<RunIo> = {}): Promise<{ end: RunEnd; output: string }> {
  let output = '';
  const end = await vmDriver.run(sandbox, { stdio: ['ignore', 'ignore', 'ignore'], output: (chunk) => (output += chunk.toString()), ...io });
  return { end, output };
}

function runsDir(): string {
  return `${recordsDir().replace(/\/jails$/, '')}/vm`;
}

function assertNothingLeft(sandbox: SandboxPlan): void {
  for (const dir of sandbox.limits.cgroup.dirs) assert.equal(existsSync(dir), false, `cgroup ${dir} is left`);
  assert.equal(existsSync(`${recordsDir()}/${sandbox.id}.json`), false, 'the record is left');
  assert.equal(existsSync(`${runsDir()}/${sandbox.id}`), false, 'the run directory (sockets, logs) is left');
}

describe('the vm tier in the foreground', { skip }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'brig-vm-ws-'));
    chmodSync(work, 0o755);
    chownSync(work, USER, USER);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test("its own kernel; exit code and output come back; the workspace is written as its owner; nothing is left", async () => {
    const sandbox = plan(work, ['/bin/sh', '-c', 'uname -r; id -u; date +%s; echo made > from-vm; echo err >&2; exit 7']);
    const { end, output } = await run(sandbox);
    assert.deepEqual(end, { reason: 'exit', exitCode: 7 });
    const [kernel, uid, clock] = output.split('\n');
    // The guest reads the wall clock from its RTC: without one it was 1970, and envd's signed URLs never expired.
    assert.ok(Math.abs(Number(clock) - Date.now() / 1000) < 600, `the guest's clock says ${clock}`);
    assert.notEqual(kernel, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), 'a kernel of its own, not the host\'s');
    assert.equal(uid, String(USER));
    assert.match(output, /err/);
    assert.equal(readFileSync(join(work, 'from-vm'), 'utf8'), 'made\n');
    assert.deepEqual([statSync(join(work, 'from-vm')).uid, statSync(join(work, 'from-vm')).gid], [USER, USER]);
    assertNothingLeft(sandbox);
  });

  test('stdin reaches the command whole, to its end; large output comes back whole', async () => {
    const input = join(work, 'input.bin');
    writeFileSync(input, Buffer.alloc(300_000, 7));
    const fd = openSync(input, 'r');
    try {
      const { end, output } = await run(plan(work, ['/bin/sh', '-c', 'wc -c; head -c 3000000 /dev/zero | wc -c']), { stdio: [fd, 'ignore', 'ignore'] });
      assert.deepEqual(end, { reason: 'exit', exitCode: 0 });
      assert.deepEqual(output.trim().split(/\s+/), ['300000', '3000000']);
    } finally {
      closeSync(fd);
    }
  });

  test('the second layer: inside the guest the command runs in the jail\'s bubblewrap, with its seccomp filter, no capabilities, no network', async () => {
    const { end, output } = await run(plan(work, ['/bin/sh', '-c', 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -d "\\t"; tr "\\0" " " < /proc/1/cmdline | cut -d" " -f1; cut -d: -f1 < /proc/net/dev | tail -n +3 | tr -d " "; unshare -U true 2>/dev/null || echo no-userns; uname -r >/dev/null 2>&1 || echo uname-denied'], denySyscalls('uname')));
    assert.deepEqual(end, { reason: 'exit', exitCode: 0 });
    assert.deepEqual(output.trim().split('\n'), ['CapEff:0000000000000000', 'NoNewPrivs:1', 'Seccomp:2', '/usr/bin/bwrap', 'lo', 'no-userns', 'uname-denied']);
  });

  test("network.mode host: a network device on QEMU's user network, the host's loopback at 10.0.2.2, a resolver that answers; still the second layer", async () => {
    const server = createServer((request, response) => response.end(`host saw ${request.url}\n`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const script = `cut -d: -f1 < /proc/net/dev | tail -n +3 | tr -d " " | sort; curl -sS -m 20 http://10.0.2.2:${port}/from-the-guest; grep -c nameserver /etc/resolv.conf; grep CapEff /proc/self/status | tr -d "\\t"`;
      const { end, output } = await run(plan(work, ['/bin/sh', '-c', script], network('host')));
      assert.deepEqual(end, { reason: 'exit', exitCode: 0 }, output);
      assert.deepEqual(output.trim().split('\n'), ['eth0', 'lo', 'host saw /from-the-guest', '1', 'CapEff:0000000000000000']);
    } finally {
      server.close();
    }
  });

  test('what the tier cannot render is refused before anything starts, with BRIG_VM_UNSUPPORTED', async () => {
    const tiny = plan(work, ['true'], memory(64));
    await assert.rejects(run(tiny), { code: 'BRIG_VM_UNSUPPORTED', message: /128 MiB/ });
    const stranger = { ...plan(work, ['true']), identity: { ...plan(work, ['true']).identity, uid: 4242, gid: 4242 } };
    await assert.rejects(run(stranger), { code: 'BRIG_VM_UNSUPPORTED', message: /maps no ids/ });
    assertNothingLeft(tiny);
  });

  test('the timeout and the caller\'s abort end the VM whole; nothing is left', async () => {
    const slow = plan(work, ['sleep', '600'], timeout(3000));
    assert.deepEqual((await run(slow)).end, { reason: 'timeout' });
    assertNothingLeft(slow);
    const aborted = plan(work, ['sleep', '600']);
    const controller = new AbortController();
    const ending = run(aborted, { signal: controller.signal, started: () => setTimeout(() => controller.abort('SIGINT'), 500) });
    assert.deepEqual((await ending).end, { reason: 'signal', signal: 'SIGINT' });
    assertNothingLeft(aborted);
  });

  test('a guest that gives no sign of life (QEMU frozen with SIGSTOP) is killed and the run ends with BRIG_VM_HUNG; nothing is left', async () => {
    await withEnv('BRIG_VM_HUNG_AFTER', '3', async () => {
      rmSync(join(work, 'frozen'), { force: true });
      const frozen = plan(work, ['/bin/sh', '-c', 'touch frozen; sleep 600']);
      const ending = run(frozen);
      assert.ok(await eventually(() => existsSync(join(work, 'frozen'))), 'the command started');
      const qemu = cgroupPids(frozen.limits.cgroup.dirs[0] as string).find((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'qemu-system-x86');
      assert.ok(qemu, 'QEMU runs in the cgroup');
      process.kill(qemu, 'SIGSTOP');
      const { end } = await ending;
      assert.equal(end.reason, 'setup');
      assert.equal(end.reason === 'setup' && end.code, 'BRIG_VM_HUNG');
      assert.match(end.reason === 'setup' ? end.message : '', /^the VM hung: its init gave no sign of life for 3 s/);
      assertNothingLeft(frozen);
    });
  });

  /** `brig run --tier vm` started in `work`, and the id of its run once its record is written. */
  async function startBrig(command: string): Promise<{ child: ReturnType<typeof spawn>; id: string; cgroupDirs: string[] }> {
    const runs = runsDir();
    const before = existsSync(runs) ? readdirSync(runs) : [];
    const child = spawn(BRIG, ['run', '--tier', 'vm', '--memory', '256m', '--', '/bin/sh', '-c', command], { cwd: work, stdio: ['ignore', 'ignore', 'ignore'] });
    assert.ok(await eventually(() => existsSync(runs) && readdirSync(runs).some((name) => !before.includes(name)), 3000), 'the run started');
    const id = readdirSync(runs).find((name) => !before.includes(name)) as string;
    const record = JSON.parse(readFileSync(`${recordsDir()}/${id}.json`, 'utf8')) as { cgroupDirs: string[] };
    return { child, id, cgroupDirs: record.cgroupDirs };
  }

  async function killOutright(child: ReturnType<typeof spawn>): Promise<void> {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async function assertSwept(id: string, cgroupDirs: string[]): Promise<void> {
    assert.ok((await sweepLeftovers()).includes(id), 'the next brig sweeps the dead run');
    for (const dir of cgroupDirs) assert.equal(existsSync(dir), false, 'a cgroup is removed only once nothing is left in it');
    assert.equal(existsSync(`${runsDir()}/${id}`), false);
  }

  test('brig killed with SIGKILL while the VM runs takes QEMU and virtiofsd along; the next brig sweeps the rest', async () => {
    rmSync(join(work, 'started'), { force: true });
    const { child, id, cgroupDirs } = await startBrig('touch started; sleep 600');
    assert.ok(await eventually(() => existsSync(join(work, 'started')), 3000), 'the command runs in the guest');
    await killOutright(child);
    assert.ok(await eventually(() => cgroupPids(cgroupDirs[0] as string).length === 0, 3000), 'QEMU and virtiofsd\'s bubblewrap (parent-death signals) are gone');
    await assertSwept(id, cgroupDirs);
  });

  test('brig killed with SIGKILL as the VM starts leaves nothing the next brig does not sweep', async () => {
    // bubblewrap sets its init's parent-death signal only after the sandbox's setup: killed
    // before that, the view's bubblewrap and virtiofsd wait on; the record is what ends them.
    const { child, id, cgroupDirs } = await startBrig('sleep 600');
    await killOutright(child);
    await assertSwept(id, cgroupDirs);
  });
});
