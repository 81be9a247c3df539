import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, type SandboxOpts } from 'e2b';
import type { MemoryEvent } from '../../src/protocol/index.ts';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

/**
 * A daemon sandbox at its memory limit (issue 10, item 8). On cgroup v1 the
 * kernel pauses the whole sandbox there and waits; before brig chose a
 * victim, the SDK's call, every later exec and envd itself hung forever
 * while `brig ls` said running. Each test blows a 64 MiB limit for real
 * through the e2b SDK; a regression hangs the test.
 */

const API_KEY = 'brig_memory_key';
const HOG = `perl -e '$x = "a" x (400 * 1024 * 1024); print "survived\\n"'`;

describe('brig serve: a sandbox at its memory limit', () => {
  const state = tempWorkspace('brig-serve-memory-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${daemon.url}${path}`, { method, headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: response.status, body: (response.status === 204 ? null : await response.json()) as T };
  };
  /** The SDK cannot send brig's policy: create through the API, then connect as any E2B user would. */
  const create = async (resources: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Sandbox> => {
    const created = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'base', policy: { resources: { memoryMiB: 64, ...resources } }, ...extra });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return Sandbox.connect(created.body.sandboxID, opts());
  };
  const events = async (id: string) => (await api<MemoryEvent[]>('GET', `/v1/sandboxes/${id}/memory-events`)).body;

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('kill-process: the SDK call ends with the hog killed, the sandbox answers, memory-events and brig info name the kill', async () => {
    const sandbox = await create({});
    try {
      const failed = (await sandbox.commands.run(HOG).then(
        () => null,
        (error: Error & { exitCode?: number; error?: string; stdout?: string }) => error,
      ))!;
      assert.ok(failed, 'the hog did not fail');
      assert.equal(failed.error, 'signal: killed');
      assert.doesNotMatch(failed.stdout ?? '', /survived/);
      assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n');
      const [event, ...more] = await events(sandbox.sandboxId);
      assert.equal(more.length, 0);
      assert.equal(event?.action, 'kill-process');
      assert.equal(event?.command, 'perl');
      assert.equal(event?.main, false);
      assert.ok((event?.rssBytes ?? 0) > 32 * 1024 * 1024, `rss ${event?.rssBytes}`);
      const info = await runBrig(['info', sandbox.sandboxId], { env: { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY } });
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, /Out of memory: +\S+ killed perl \(pid \d+ inside, [\d.]+ MiB resident\), the largest process at the limit; the rest went on/);
      const listed = (await api<Array<{ id: string; state: string }>>('GET', '/v1/sandboxes')).body.find((item) => item.id === sandbox.sandboxId);
      assert.equal(listed?.state, 'running');
    } finally {
      await sandbox.kill();
    }
  });

  test('envd is never the one chosen, though it is the largest process', async () => {
    // envd (Node) is resident for ~45 MiB, more than either perl here: the kernel's own choice would be envd.
    const sandbox = await create({});
    try {
      const sleeper = await sandbox.commands.run(`perl -e '$y = "b" x (10 * 1024 * 1024); sleep 600'`, { background: true });
      const failed = await sandbox.commands.run(`perl -e '$x = ""; $x .= "a" x 1048576 while 1'`).then(() => null, (error: Error) => error);
      assert.ok(failed, 'the hog did not fail');
      assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n');
      const kills = await events(sandbox.sandboxId);
      assert.ok(kills.length >= 1 && kills.every((event) => event.action === 'kill-process' && event.command === 'perl'), JSON.stringify(kills));
      await sleeper.kill();
    } finally {
      await sandbox.kill();
    }
  });

  test('a sandbox that keeps hitting its limit keeps answering', async () => {
    const sandbox = await create({});
    try {
      for (let round = 0; round < 3; round++) await assert.rejects(sandbox.commands.run(HOG));
      assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n');
      assert.equal((await events(sandbox.sandboxId)).length, 3);
    } finally {
      await sandbox.kill();
    }
  });

  test('kill-sandbox: the SDK call ends with an error, the sandbox is gone, its kept record names why', async () => {
    const sandbox = await create({ onOutOfMemory: 'kill-sandbox' }, { keepWorkspace: true });
    await assert.rejects(sandbox.commands.run(HOG));
    assert.ok(await waitStopped(sandbox.sandboxId), 'the sandbox did not stop');
    const [event] = await events(sandbox.sandboxId);
    assert.equal(event?.action, 'kill-sandbox');
    assert.match(event?.reason ?? '', /kill-sandbox/);
    const listed = (await api<Array<{ id: string; endReason: string | null }>>('GET', '/v1/sandboxes?all=true')).body.find((item) => item.id === sandbox.sandboxId);
    assert.match(listed?.endReason ?? '', /its memory limit: onOutOfMemory kill-sandbox/);
    const info = await runBrig(['info', sandbox.sandboxId], { env: { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY } });
    assert.match(info.stdout, /^Ended: +its memory limit/m, info.stdout + info.stderr);
    await api('DELETE', `/v1/sandboxes/${sandbox.sandboxId}?data=true`);
  });

  test('after the daemon is killed with -9 and restarted, a sandbox it reattached is still watched', async () => {
    const sandbox = await create({});
    const id = sandbox.sandboxId;
    try {
      await daemon.stop('SIGKILL');
      daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
      const again = await Sandbox.connect(id, opts());
      await assert.rejects(again.commands.run(HOG));
      assert.equal((await again.commands.run('echo ok')).stdout, 'ok\n');
      assert.equal((await events(id))[0]?.command, 'perl');
    } finally {
      await Sandbox.kill(id, opts());
    }
  });

  test('an onOutOfMemory brig does not know is refused with 400, naming the field and the choices', async () => {
    const refused = await api<{ code: string; message: string }>('POST', '/sandboxes', { templateID: 'base', policy: { resources: { onOutOfMemory: 'kill-host' } } });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.code, 'BRIG_POLICY_INVALID');
    assert.match(refused.body.message, /resources\.onOutOfMemory.*kill-process.*kill-sandbox/);
  });

  const waitStopped = async (id: string): Promise<boolean> => {
    for (let attempt = 0; attempt < 500; attempt++) {
      const all = (await api<Array<{ id: string; state: string }>>('GET', '/v1/sandboxes?all=true')).body;
      if (all.find((item) => item.id === id)?.state === 'stopped') return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  };
});
