import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { Sandbox } from 'e2b';
import { buildPolicy, resolvePolicy, workspace } from '../../../src/policy/index.ts';
import type { SandboxHandle } from '../../../src/drivers/index.ts';
import { jailDriver } from '../../../src/drivers/jail/index.ts';
import { ENVD, tcpToUnix } from '../../helpers/envd.ts';
import { bootThenKillBooter, envdHealth } from '../../helpers/orphan-boot.ts';
import { eventually, tempWorkspace } from '../../helpers/brig.ts';
import { bindEnvdSocket } from '../../../src/daemon/sandboxes/envd-socket.ts';

const TOKEN = 'sandbox-test-token';


function spec(id: string, state: string, work: string) {
  const policy = resolvePolicy(buildPolicy(workspace(work)), { cwd: work, home: process.env.HOME ?? '/root' });
  return { id, policy, stateDir: state, envd: { bundle: ENVD, accessToken: TOKEN, socket: bindEnvdSocket(`${state}/envd`) } };
}

describe('the jail driver: a sandbox with envd inside', () => {
  let state: { dir: string; remove: () => void };
  let work: { dir: string; remove: () => void };
  let handle: SandboxHandle;
  let gateway: { url: string; server: Server };

  before(async () => {
    state = tempWorkspace('brig-state-');
    work = tempWorkspace('brig-work-');
    handle = await jailDriver.boot(spec('driver-test', state.dir, work.dir));
    gateway = await tcpToUnix(handle.endpoint.socketPath);
  });

  after(async () => {
    gateway.server.close();
    await jailDriver.stop(handle);
    state.remove();
    work.remove();
  });

  test('boot returns once envd answers on its socket, and the sandbox is alive', async () => {
    assert.equal(await envdHealth(handle.endpoint.socketPath), 204);
    assert.equal(jailDriver.liveness(handle), 'alive');
    assert.deepEqual(JSON.parse(JSON.stringify(handle)), handle, 'the handle is plain JSON');
  });

  test('the e2b SDK drives it, inside the jail, with the access token', async () => {
    const sandbox = new (Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox)({ sandboxId: 'driver-test', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: gateway.url, debug: true, apiKey: 'k' });
    const result = await sandbox.commands.run(`hostname; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; echo hi > ${work.dir}/made-in-sandbox`);
    assert.match(result.stdout, /^brig$/m);
    assert.match(result.stdout, /CapEff:\s+0{16}/);
    assert.match(result.stdout, /Seccomp:\s+2/);
    assert.equal(readFileSync(`${work.dir}/made-in-sandbox`, 'utf8'), 'hi\n');
    const anonymous = await fetch(`${gateway.url}/process.Process/List`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(anonymous.status, 401, 'without the token envd refuses');
  });

  test('usage reports the sandbox\'s memory and tasks', () => {
    const usage = jailDriver.usage(handle);
    assert.ok(usage.memoryBytes > 1024 * 1024, `memory ${usage.memoryBytes}`);
    assert.ok(usage.pids >= 2, `pids ${usage.pids}`);
  });
});

describe('the jail driver: a sandbox outlives the process that booted it, and stops clean', () => {
  test('kill -9 the booting process; the sandbox lives on; stop from elsewhere leaves nothing', async () => {
    const state = tempWorkspace('brig-state-');
    const work = tempWorkspace('brig-work-');
    try {
      const handle = await bootThenKillBooter('jail', { id: 'orphan-test', workDir: work.dir, stateDir: state.dir });
      assert.equal(await envdHealth(handle.endpoint.socketPath), 204, 'envd still answers after its booter died');
      assert.equal(jailDriver.liveness(handle), 'alive');

      await jailDriver.stop(handle);
      assert.equal(jailDriver.liveness(handle), 'gone');
      assert.ok(await eventually(() => !existsSync(`/proc/${handle.pid}`)), 'the jail is gone');
      for (const dir of (handle.detail as { cgroup: { dirs: string[] } }).cgroup.dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
      assert.equal(existsSync(handle.endpoint.socketPath), false, 'the socket is removed');
      await jailDriver.stop(handle); // twice is fine
    } finally {
      state.remove();
      work.remove();
    }
  });
});
