import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { collect, startBrig, tempWorkspace, type Result } from '../helpers/brig.ts';
import { EGRESS_SOCKET_NAME } from '../../src/protocol/index.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_test_key';

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/**
 * `brig serve` expected to refuse: its result once it exits. One that
 * starts serving instead is stopped (so the test fails rather than hangs)
 * and reported with `served`.
 */
async function serveExpectingRefusal(stateDir: string): Promise<Result & { served: boolean }> {
  const child = startBrig(['serve', '--port', '0', '--pool', '0', '--state', stateDir], { env: { ...process.env, BRIG_API_KEY: API_KEY } });
  let served = false;
  child.stdout?.on('data', (chunk: Buffer) => {
    if (!served && /listening on/.test(chunk.toString())) {
      served = true;
      child.kill('SIGTERM');
    }
  });
  const result = await collect(child);
  return { ...result, served };
}

describe('brig serve: one daemon per state directory', () => {
  test('a second daemon on the same state directory refuses, naming the first one\'s pid and address; the first keeps its sandbox', async () => {
    const state = tempWorkspace('brig-serve-');
    const first = await serveDaemon(state.dir, { apiKey: API_KEY });
    let sandbox: Sandbox | null = null;
    try {
      // An allowlist sandbox: its egress socket is what a second daemon took over, and removed when it stopped.
      sandbox = await Sandbox.create({ ...opts(first), network: { allowOut: ['example.com'] } } as SandboxOpts);
      const egressSocket = `${state.dir}/sandboxes/${sandbox.sandboxId}/egress/${EGRESS_SOCKET_NAME}`;
      const before = statSync(egressSocket).ino;
      const second = await serveExpectingRefusal(state.dir);
      assert.equal(second.served, false, 'the second daemon must not serve');
      assert.equal(second.code, 125, second.stderr + second.stdout);
      assert.match(second.stderr, /\[BRIG_STATE_LOCKED\]/);
      assert.match(second.stderr, new RegExp(`pid ${first.process.pid}, listening on ${first.url.replace(/\./g, '\\.')}`));
      assert.match(second.stderr, /hint: .*--state DIR/);

      // The first daemon's egress socket is untouched (a second daemon used to bind its own there, and remove it when it stopped).
      assert.equal(statSync(egressSocket).ino, before, 'the egress socket is still the first daemon\'s');
      assert.equal((await sandbox.commands.run('echo alive')).stdout, 'alive\n');
      assert.ok((await Sandbox.list(opts(first)).nextItems()).some((info) => info.sandboxId === sandbox?.sandboxId));
    } finally {
      if (sandbox) await sandbox.kill().catch(() => false);
      await first.stop();
      state.remove();
    }
  });

  test('the lock dies with its daemon: after kill -9 the next daemon starts and takes the sandboxes back', async () => {
    const state = tempWorkspace('brig-serve-');
    let daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    try {
      const sandbox = await Sandbox.create(opts(daemon));
      await daemon.stop('SIGKILL');
      daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
      const again = await Sandbox.connect(sandbox.sandboxId, opts(daemon));
      assert.equal((await again.commands.run('echo back')).stdout, 'back\n');
      await again.kill();
    } finally {
      await daemon.stop();
      state.remove();
    }
  });
});

describe('brig serve: a state directory sandboxes cannot reach', () => {
  test('under a 0700 parent the daemon refuses to start, naming the parent and the fix', { skip: process.getuid?.() !== 0 ? 'only root daemons run sandboxes as other users' : false }, async () => {
    const parent = tempWorkspace('brig-closed-parent-');
    try {
      chmodSync(parent.dir, 0o700);
      mkdirSync(`${parent.dir}/state`);
      const result = await serveExpectingRefusal(`${parent.dir}/state`);
      assert.equal(result.served, false, 'a daemon whose sandboxes cannot reach their workspaces must not serve');
      assert.equal(result.code, 125, result.stderr + result.stdout);
      assert.match(result.stderr, /\[BRIG_STATE_DIR\]/);
      assert.match(result.stderr, new RegExp(`under ${parent.dir} \\(mode 0700\\)`));
      assert.match(result.stderr, new RegExp(`hint: .*chmod o\\+x ${parent.dir}`));
      assert.doesNotMatch(result.stderr, /at .*\.ts:\d+/, 'no stack trace');
    } finally {
      parent.remove();
    }
  });
});
