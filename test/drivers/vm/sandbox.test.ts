import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox } from 'e2b';
import { buildPolicy, memory, onOutOfMemory, resolvePolicy, workspace, type PolicyChange } from '../../../src/policy/index.ts';
import type { SandboxHandle } from '../../../src/drivers/index.ts';
import { vmDriver } from '../../../src/drivers/vm/index.ts';
import { ENVD, tcpToUnix } from '../../helpers/envd.ts';
import { bootThenKillBooter, envdHealth } from '../../helpers/orphan-boot.ts';
import { bindEnvdSocket } from '../../../src/daemon/sandboxes/envd-socket.ts';
import { withEnv } from '../../helpers/env.ts';

/**
 * The vm tier as a daemon sandbox: envd in the guest, reached through the
 * endpoint the caller bound, over brig.service (multiplexed). Each boot is a
 * few seconds on TCG; no waits have a time limit.
 */
const TOKEN = 'vm-sandbox-token';
const USER = 1000;
const status = vmDriver.status();
const skip = status.available ? false : `the vm tier cannot run here: ${status.detail}`;

function tempDir(prefix: string, owner?: number): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (owner !== undefined) {
    chmodSync(dir, 0o755);
    chownSync(dir, owner, owner);
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function spec(id: string, state: string, work: string, memoryMiB = 512, ...changes: PolicyChange[]) {
  const policy = resolvePolicy(buildPolicy(workspace(work), memory(memoryMiB), ...changes), { cwd: work, home: '/root' });
  return { id, policy, stateDir: state, envd: { bundle: ENVD, accessToken: TOKEN, socket: bindEnvdSocket(`${state}/envd`) } };
}

function e2bSandbox(url: string): Sandbox {
  return new (Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox)({ sandboxId: 'vm-test', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: url, debug: true, apiKey: 'k' });
}

async function eventually(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** Nothing of the sandbox is left on the host: its cgroups (so no QEMU, virtiofsd or gate), its vm directory, its endpoint. */
function assertNothingLeft(handle: SandboxHandle): void {
  const detail = handle.detail as { cgroup: { dirs: string[] }; dir: string };
  for (const dir of detail.cgroup.dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
  assert.equal(existsSync(detail.dir), false, 'the vm directory is removed');
  assert.equal(existsSync(handle.endpoint.socketPath), false, 'the endpoint is removed');
  assert.equal(vmDriver.liveness(handle), 'gone');
}

describe('the vm driver: a sandbox with envd in the guest', { skip }, () => {
  let state: ReturnType<typeof tempDir>;
  let work: ReturnType<typeof tempDir>;
  let handle: SandboxHandle;
  let gateway: { url: string; server: Server };

  before(async () => {
    state = tempDir('brig-vm-state-');
    work = tempDir('brig-vm-ws-', USER);
    handle = await vmDriver.boot(spec(`vm-sbx-${process.pid}`, state.dir, work.dir));
    gateway = await tcpToUnix(handle.endpoint.socketPath);
  });

  after(async () => {
    try {
      gateway.server.close();
      await vmDriver.stop(handle);
      assertNothingLeft(handle);
      await vmDriver.stop(handle); // twice is fine
    } finally {
      state.remove();
      work.remove();
    }
  });

  test('boot returns once envd answers on the endpoint; the handle is plain JSON', async () => {
    assert.equal(await envdHealth(handle.endpoint.socketPath), 204);
    assert.equal(vmDriver.liveness(handle), 'alive');
    assert.equal(handle.driver, 'vm');
    assert.deepEqual(JSON.parse(JSON.stringify(handle)), handle);
    assert.equal(existsSync(`${(handle.detail as { dir: string }).dir}/config`), false, 'the config (it holds the token) has no name on the host');
  });

  test('commands run through the e2b SDK in the guest: its own kernel, the second layer, the workspace written as its owner', async () => {
    const sandbox = e2bSandbox(gateway.url);
    const result = await sandbox.commands.run(`uname -r; id -u; grep -E "^CapEff:" /proc/self/status; echo hi > ${work.dir}/made-in-vm`);
    const [kernel, uid, caps] = result.stdout.trim().split('\n');
    assert.notEqual(kernel, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), "the guest's kernel, not the host's");
    assert.equal(uid, String(USER));
    assert.match(caps ?? '', /CapEff:\s+0{16}/);
    assert.equal(readFileSync(`${work.dir}/made-in-vm`, 'utf8'), 'hi\n');
    assert.equal(statSync(`${work.dir}/made-in-vm`).uid, USER);
    const anonymous = await fetch(`${gateway.url}/process.Process/List`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(anonymous.status, 401, 'without the token envd refuses');
  });

  test('many requests at once share the one port; a large file goes both ways whole', async () => {
    const sandbox = e2bSandbox(gateway.url);
    const results = await Promise.all(Array.from({ length: 12 }, (_, index) => sandbox.commands.run(`echo run-${index}`)));
    assert.deepEqual(results.map((result) => result.stdout), Array.from({ length: 12 }, (_, index) => `run-${index}\n`));
    const data = Buffer.alloc(3 * 1024 * 1024, 'v');
    await sandbox.files.write(`${work.dir}/big.bin`, new Blob([data]));
    assert.equal(statSync(`${work.dir}/big.bin`).size, data.length);
    const back = await sandbox.files.read(`${work.dir}/big.bin`, { format: 'bytes' });
    assert.equal(Buffer.from(back).equals(data), true);
  });

  test('the gate and QEMU run as nobody (QEMU under its own seccomp filter); virtiofsd and its bubblewrap are the only root processes', () => {
    const dirs = (handle.detail as { cgroup: { dirs: string[] } }).cgroup.dirs;
    const processes = readFileSync(`${dirs[0]}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map((pid) => {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return { uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]), name: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '', seccomp: /^Seccomp:\s+(\d)/m.exec(status)?.[1] };
    });
    assert.deepEqual(processes.filter((entry) => entry.uid === 65534).map((entry) => entry.name).sort(), ['node', 'qemu-system-x86'], JSON.stringify(processes));
    assert.deepEqual([...new Set(processes.filter((entry) => entry.uid === 0).map((entry) => entry.name))].sort(), ['bwrap', 'virtiofsd'], JSON.stringify(processes));
    assert.equal(processes.find((entry) => entry.name === 'qemu-system-x86')?.seccomp, '2', "QEMU's own filter");
  });

  test('usage reports the host side: memory, tasks, CPU', () => {
    const usage = vmDriver.usage(handle);
    assert.ok(usage.memoryBytes > 64 * 1024 * 1024, `memory ${usage.memoryBytes}`);
    assert.ok(usage.pids >= 3, `pids ${usage.pids}`);
    assert.ok(usage.cpuUsec > 0, `cpu ${usage.cpuUsec}`);
  });
});

describe('the vm driver: a sandbox outlives the process that booted it, and stops clean', { skip }, () => {
  test('kill -9 the booting process; the sandbox lives on; stop from the handle alone leaves nothing', async () => {
    const state = tempDir('brig-vm-state-');
    const work = tempDir('brig-vm-ws-', USER);
    try {
      const handle = await bootThenKillBooter('vm', { id: `vm-orphan-${process.pid}`, workDir: work.dir, stateDir: state.dir, memoryMiB: 256 });
      assert.equal(await envdHealth(handle.endpoint.socketPath), 204, 'envd still answers after its booter died');
      assert.equal(vmDriver.liveness(handle), 'alive');
      await vmDriver.stop(handle);
      await eventually(() => !existsSync(`/proc/${handle.pid}`));
      assertNothingLeft(handle);
    } finally {
      state.remove();
      work.remove();
    }
  });
});

describe('the vm driver: a guest that hangs or panics is found gone, says why, and stops clean', { skip }, () => {
  /** A sandbox booted for one test (its own state and workspace), handed to `body`; stopped and removed after, whatever happens. */
  async function withSandbox(id: string, boot: (spec: ReturnType<typeof specFor>) => Promise<SandboxHandle>, body: (handle: SandboxHandle) => Promise<void>, ...changes: PolicyChange[]): Promise<void> {
    const state = tempDir('brig-vm-state-');
    const work = tempDir('brig-vm-ws-', USER);
    let handle: SandboxHandle | undefined;
    try {
      handle = await boot(specFor(`${id}-${process.pid}`, state.dir, work.dir, changes));
      await body(handle);
      await vmDriver.stop(handle);
      assertNothingLeft(handle);
    } finally {
      if (handle) await vmDriver.stop(handle);
      state.remove();
      work.remove();
    }
  }
  const specFor = (id: string, state: string, work: string, changes: PolicyChange[]) => spec(id, state, work, 256, ...changes);

  test('a guest that stops beating (QEMU frozen with SIGSTOP): the gate gives up, liveness says gone, whyGone says it hung', async () => {
    await withSandbox('vm-hung', (given) => withEnv('BRIG_VM_HUNG_AFTER', '3', () => vmDriver.boot(given)), async (booted) => {
      // Quiet is not hung: an idle guest still beats.
      await new Promise((resolve) => setTimeout(resolve, 4000));
      assert.equal(vmDriver.liveness(booted), 'alive', 'an idle guest is not taken for a hung one');
      process.kill(booted.pid, 'SIGSTOP');
      await eventually(() => vmDriver.liveness(booted) === 'gone');
      assert.match(vmDriver.whyGone?.(booted) ?? '', /^the VM hung: its init gave no sign of life for 3 s/);
    });
  });

  test('a guest kernel that panics (its memory used up, onOutOfMemory kill-sandbox): gone, and whyGone quotes the panic', async () => {
    await withSandbox('vm-panic', (given) => vmDriver.boot(given), async (booted) => {
      const gateway = await tcpToUnix(booted.endpoint.socketPath);
      try {
        const sandbox = e2bSandbox(gateway.url);
        await sandbox.commands.run(`perl -e '@x = map { "a" x (1 << 20) } 1 .. 400'`).catch(() => {});
      } finally {
        gateway.server.close();
      }
      await eventually(() => vmDriver.liveness(booted) === 'gone');
      assert.match(vmDriver.whyGone?.(booted) ?? '', /^the guest kernel panicked: (Out of memory|System is deadlocked on memory)/);
    }, onOutOfMemory('kill-sandbox'));
  });

  test('BRIG_VM_HUNG_AFTER that is not a number of seconds is refused before anything starts', async () => {
    const state = tempDir('brig-vm-state-');
    const work = tempDir('brig-vm-ws-', USER);
    try {
      const id = `vm-badhung-${process.pid}`;
      await assert.rejects(withEnv('BRIG_VM_HUNG_AFTER', '1e3', () => vmDriver.boot(spec(id, state.dir, work.dir, 256))), { code: 'BRIG_USAGE', message: /BRIG_VM_HUNG_AFTER/ });
      assert.equal(existsSync(`${state.dir}/vm`), false, 'nothing was started');
      for (const controller of ['pids', 'cpu', 'cpuacct']) assert.equal(existsSync(`/sys/fs/cgroup/${controller}/brig-${id}`), false, `no ${controller} cgroup was made`);
    } finally {
      state.remove();
      work.remove();
    }
  });
});
