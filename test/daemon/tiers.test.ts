import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';

const API_KEY = 'brig_tiers_key';
const gvisor = TEST_TIERS.find((entry) => entry.tier === 'gvisor');

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/** A create naming its tier (brig's field beside E2B's), then the e2b SDK connected to it. */
async function createOn(daemon: RunningDaemon, tier?: string): Promise<Sandbox> {
  const response = await fetch(`${daemon.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': API_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', ...(tier ? { tier } : {}) }),
  });
  const body = (await response.json()) as { sandboxID: string };
  assert.equal(response.status, 201, JSON.stringify(body));
  return Sandbox.connect(body.sandboxID, opts(daemon));
}

async function listedTiers(daemon: RunningDaemon): Promise<Record<string, string>> {
  const listed = (await (await fetch(`${daemon.url}/v1/sandboxes`, { headers: { 'X-API-KEY': API_KEY } })).json()) as Array<{ id: string; tier: string }>;
  return Object.fromEntries(listed.map((entry) => [entry.id, entry.tier]));
}

describe('one daemon, sandboxes of several tiers', { skip: gvisor?.skip ?? 'no gvisor tier' }, () => {
  test('a jail and a gVisor sandbox side by side; after kill -9 of the daemon each is reattached through its own driver; stopping them leaves nothing', async () => {
    const state = tempWorkspace('brig-tiers-');
    let daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    const made: string[] = [];
    try {
      const jail = await createOn(daemon);
      made.push(jail.sandboxId);
      const sentry = await createOn(daemon, 'gvisor');
      made.push(sentry.sandboxId);
      // gVisor's Sentry answers as its own kernel; the jail shares the host's.
      const hostKernel = (await jail.commands.run('uname -r')).stdout.trim();
      assert.notEqual(hostKernel, '4.4.0');
      assert.equal((await sentry.commands.run('uname -r')).stdout.trim(), '4.4.0');
      await sentry.files.write('/home/user/kept.txt', 'across a restart');
      assert.deepEqual(await listedTiers(daemon), { [jail.sandboxId]: 'jail', [sentry.sandboxId]: 'gvisor' });

      await daemon.stop('SIGKILL');
      daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
      assert.deepEqual(await listedTiers(daemon), { [jail.sandboxId]: 'jail', [sentry.sandboxId]: 'gvisor' }, 'both reattached');
      const again = await Sandbox.connect(sentry.sandboxId, opts(daemon));
      assert.equal(await again.files.read('/home/user/kept.txt'), 'across a restart');
      assert.equal((await again.commands.run('uname -r')).stdout.trim(), '4.4.0');
      assert.equal((await (await Sandbox.connect(jail.sandboxId, opts(daemon))).commands.run('uname -r')).stdout.trim(), hostKernel);

      for (const id of made.splice(0)) await Sandbox.kill(id, opts(daemon));
      assert.deepEqual(await listedTiers(daemon), {});
      assert.equal(existsSync(`${state.dir}/sandboxes/${sentry.sandboxId}`), false, "the gVisor sandbox's directory (bundle, runsc state) is gone");
    } finally {
      for (const id of made) await Sandbox.kill(id, opts(daemon)).catch(() => false);
      await daemon.stop();
      state.remove();
    }
  });

  test('brig serve --tier gvisor makes it the default; a create may still ask for the jail', async () => {
    const state = tempWorkspace('brig-tiers-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--tier', 'gvisor'] });
    const made: Sandbox[] = [];
    try {
      made.push(await Sandbox.create(opts(daemon)));
      made.push(await createOn(daemon, 'jail'));
      const [byDefault, jail] = made as [Sandbox, Sandbox];
      assert.deepEqual(await listedTiers(daemon), { [byDefault.sandboxId]: 'gvisor', [jail.sandboxId]: 'jail' });
      // The E2B layout holds on both: user `user`, the workspace at /home/user.
      for (const sandbox of made) assert.equal((await sandbox.commands.run('echo "$(id -un) $(pwd)"')).stdout, 'user /home/user\n');
    } finally {
      for (const sandbox of made) await sandbox.kill().catch(() => false);
      await daemon.stop();
      state.remove();
    }
  });
});

const vm = TEST_TIERS.find((entry) => entry.tier === 'vm');

describe('a daemon sandbox in a microVM', { skip: vm?.skip ?? 'no vm tier' }, () => {
  test('brig serve --tier vm: the e2b SDK creates one, runs commands in its own kernel, reattaches after kill -9 of the daemon; killing it leaves nothing', async () => {
    const state = tempWorkspace('brig-tiers-vm-');
    let daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--tier', 'vm'] });
    let made: Sandbox | null = null;
    try {
      made = await Sandbox.create({ ...opts(daemon), timeoutMs: 600_000 });
      const kernel = (await made.commands.run('uname -r')).stdout.trim();
      assert.notEqual(kernel, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), "the guest's own kernel, not the host's");
      // The E2B layout holds here too: user `user`, the workspace at /home/user.
      assert.equal((await made.commands.run('echo "$(id -un) $(pwd)"')).stdout, 'user /home/user\n');
      await made.files.write('/home/user/kept.txt', 'across a restart');
      assert.deepEqual(await listedTiers(daemon), { [made.sandboxId]: 'vm' });

      await daemon.stop('SIGKILL');
      daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--tier', 'vm'] });
      assert.deepEqual(await listedTiers(daemon), { [made.sandboxId]: 'vm' }, 'reattached');
      const again = await Sandbox.connect(made.sandboxId, opts(daemon));
      assert.equal(await again.files.read('/home/user/kept.txt'), 'across a restart');

      await Sandbox.kill(made.sandboxId, opts(daemon));
      assert.deepEqual(await listedTiers(daemon), {});
      assert.equal(existsSync(`${state.dir}/sandboxes/${made.sandboxId}`), false, "the VM sandbox's directory (sockets, console log) is gone");
      made = null;
    } finally {
      if (made) await Sandbox.kill(made.sandboxId, opts(daemon)).catch(() => false);
      await daemon.stop();
      state.remove();
    }
  });

  test("allowInternetAccess (network.mode host) gives the VM a network device: it reaches the host's loopback at 10.0.2.2", async () => {
    const state = tempWorkspace('brig-tiers-vm-net-');
    const server = createServer((request, response) => response.end(`host saw ${request.url}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--tier', 'vm'] });
    let made: Sandbox | null = null;
    try {
      made = await Sandbox.create({ ...opts(daemon), timeoutMs: 600_000, allowInternetAccess: true } as SandboxOpts);
      const port = (server.address() as AddressInfo).port;
      assert.equal((await made.commands.run(`curl -sS -m 20 http://10.0.2.2:${port}/from-a-vm-sandbox`)).stdout, 'host saw /from-a-vm-sandbox');
    } finally {
      if (made) await Sandbox.kill(made.sandboxId, opts(daemon)).catch(() => false);
      await daemon.stop();
      server.close();
      state.remove();
    }
  });
});
