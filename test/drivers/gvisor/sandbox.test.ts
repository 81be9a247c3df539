import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox } from 'e2b';
import { buildPolicy, memory, resolvePolicy, workspace } from '../../../src/policy/index.ts';
import type { MemoryEvent } from '../../../src/protocol/index.ts';
import type { SandboxHandle } from '../../../src/drivers/index.ts';
import { gvisorDriver } from '../../../src/drivers/gvisor/index.ts';
import { linkEndpoint } from '../../../src/drivers/gvisor/envd-socket.ts';
import { ENVD, tcpToUnix } from '../../helpers/envd.ts';
import { bootThenKillBooter, envdHealth } from '../../helpers/orphan-boot.ts';
import { bindEnvdSocket } from '../../../src/daemon/sandboxes/envd-socket.ts';
import { tempWorkspace, USER_UID } from './plan-fixture.ts';

const TOKEN = 'gvisor-sandbox-token';
const status = gvisorDriver.status();
const skip = status.available ? false : `gVisor is unavailable here: ${status.detail}`;

function tempState(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'brig-gvisor-state-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function spec(id: string, state: string, work: string) {
  const policy = resolvePolicy(buildPolicy(workspace(work)), { cwd: work, home: '/root' });
  return { id, policy, stateDir: state, envd: { bundle: ENVD, accessToken: TOKEN, socket: bindEnvdSocket(`${state}/envd`) } };
}

async function eventually(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** Nothing of the sandbox is left on the host: its cgroups, its gvisor directory (bundle, runsc state, envd's), its endpoint, its processes. */
function assertNothingLeft(handle: SandboxHandle): void {
  const detail = handle.detail as { cgroup: { dirs: string[] }; dir: string };
  for (const dir of detail.cgroup.dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
  assert.equal(existsSync(detail.dir), false, 'the gvisor directory is removed');
  assert.equal(existsSync(handle.endpoint.socketPath), false, 'the endpoint is removed');
  assert.equal(gvisorDriver.liveness(handle), 'gone', 'the Sentry is gone (or a zombie its reaper has yet to collect)');
}

describe('the gVisor driver: a sandbox with envd inside', { skip }, () => {
  let state: ReturnType<typeof tempState>;
  let work: ReturnType<typeof tempWorkspace>;
  let handle: SandboxHandle;
  let gateway: { url: string; server: Server };

  before(async () => {
    state = tempState();
    work = tempWorkspace();
    handle = await gvisorDriver.boot(spec(`gv-sbx-${process.pid}`, state.dir, work.dir));
    gateway = await tcpToUnix(handle.endpoint.socketPath);
  });

  after(async () => {
    try {
      gateway.server.close();
      await gvisorDriver.stop(handle);
      assertNothingLeft(handle);
      await gvisorDriver.stop(handle); // twice is fine
    } finally {
      state.remove();
      work.remove();
    }
  });

  test('boot returns once envd answers on the endpoint, a hard link to envd\'s socket', async () => {
    assert.equal(await envdHealth(handle.endpoint.socketPath), 204);
    assert.equal(gvisorDriver.liveness(handle), 'alive');
    assert.equal(handle.driver, 'gvisor');
    assert.ok(lstatSync(handle.endpoint.socketPath).isSocket());
    assert.equal(statSync(handle.endpoint.socketPath).nlink, 2);
    assert.deepEqual(JSON.parse(JSON.stringify(handle)), handle, 'the handle is plain JSON');
  });

  test('a command runs through envd under gVisor, as the workspace owner, whose files keep their host owner', async () => {
    const sandbox = new (Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox)({ sandboxId: 'gvisor-test', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: gateway.url, debug: true, apiKey: 'k' });
    const result = await sandbox.commands.run(`hostname; id -u; grep -E "^CapEff:" /proc/self/status; dmesg 2>/dev/null | head -1; echo hi > ${work.dir}/made-in-sandbox`);
    assert.match(result.stdout, /^brig$/m);
    assert.match(result.stdout, new RegExp(`^${USER_UID}$`, 'm'));
    assert.match(result.stdout, /CapEff:\s+0{16}/);
    assert.match(result.stdout, /gVisor/, 'the kernel log is the Sentry\'s');
    assert.equal(readFileSync(`${work.dir}/made-in-sandbox`, 'utf8'), 'hi\n');
    assert.equal(statSync(`${work.dir}/made-in-sandbox`).uid, USER_UID);
    const anonymous = await fetch(`${gateway.url}/process.Process/List`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(anonymous.status, 401, 'without the token envd refuses');
  });

  test('a symlink planted in envd\'s socket directory does not redirect the daemon', async () => {
    const sandbox = new (Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox)({ sandboxId: 'gvisor-test', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: gateway.url, debug: true, apiKey: 'k' });
    // Whatever the sandbox manages here (gVisor refuses to unlink the host socket: EPERM), the endpoint is another name for envd's inode.
    await sandbox.commands.run('cd /run/brig/envd-socket; rm -f envd.sock; mv envd.sock moved.sock; ln -sf /run/docker.sock planted.sock; mv -f planted.sock envd.sock; ls -la; true');
    assert.ok(lstatSync(handle.endpoint.socketPath).isSocket(), 'the endpoint is still the socket envd made');
    assert.equal(await envdHealth(handle.endpoint.socketPath), 204, 'and envd still answers on it');
  });

  test('usage reports the sandbox\'s memory and host tasks', () => {
    const usage = gvisorDriver.usage(handle);
    assert.ok(usage.memoryBytes > 1024 * 1024, `memory ${usage.memoryBytes}`);
    assert.ok(usage.pids >= 2, `pids ${usage.pids}`);
    assert.ok(usage.cpuUsec > 0, `cpu ${usage.cpuUsec}`);
  });
});

describe('the gVisor driver: at the memory limit the whole sandbox ends', { skip }, () => {
  test('watchMemory reports kill-sandbox and the sandbox is gone; stop leaves nothing', async () => {
    const state = tempState();
    const work = tempWorkspace();
    const booted = spec(`gv-oom-${process.pid}`, state.dir, work.dir);
    const handle = await gvisorDriver.boot({ ...booted, policy: resolvePolicy(buildPolicy(workspace(work.dir), memory(384)), { cwd: work.dir, home: '/root' }) });
    const gateway = await tcpToUnix(handle.endpoint.socketPath);
    const events: MemoryEvent[] = [];
    const watcher = gvisorDriver.watchMemory(handle, (event) => events.push(event));
    try {
      const sandbox = new (Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox)({ sandboxId: 'gvisor-oom', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: gateway.url, debug: true, apiKey: 'k' });
      await sandbox.commands.run(`node -e "const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))"`, { background: true });
      await eventually(() => events.length > 0);
      assert.equal(events[0]?.action, 'kill-sandbox');
      await eventually(() => gvisorDriver.liveness(handle) === 'gone');
    } finally {
      watcher.close();
      gateway.server.close();
      await gvisorDriver.stop(handle);
      assertNothingLeft(handle);
      state.remove();
      work.remove();
    }
  });
});

describe('linking the endpoint refuses anything but a socket', () => {
  test('a symlink to a host socket is linked as the link itself, and refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brig-gvisor-link-'));
    const server = createServer();
    try {
      await new Promise<void>((resolve) => server.listen(`${dir}/host.sock`, resolve));
      symlinkSync(`${dir}/host.sock`, `${dir}/envd.sock`);
      assert.throws(() => linkEndpoint(dir, `${dir}/endpoint.sock`), { code: 'BRIG_GVISOR_SETUP' });
      assert.equal(existsSync(`${dir}/endpoint.sock`), false);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the gVisor driver: a sandbox outlives the process that booted it, and stops clean', { skip }, () => {
  test('kill -9 the booting process; the sandbox lives on; stop from the handle alone leaves nothing', async () => {
    const state = tempState();
    const work = tempWorkspace();
    try {
      const handle = await bootThenKillBooter('gvisor', { id: `gv-orphan-${process.pid}`, workDir: work.dir, stateDir: state.dir });
      assert.equal(await envdHealth(handle.endpoint.socketPath), 204, 'envd still answers after its booter died');
      assert.equal(gvisorDriver.liveness(handle), 'alive');

      await gvisorDriver.stop(handle);
      assert.equal(gvisorDriver.liveness(handle), 'gone');
      await eventually(() => !existsSync(`/proc/${handle.pid}`));
      assertNothingLeft(handle);
    } finally {
      state.remove();
      work.remove();
    }
  });
});
