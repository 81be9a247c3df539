import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startFlood } from '../helpers/flood.ts';

const API_KEY = 'brig_flood_key';
/** More than every descriptor the daemon has (its hard limit here is 20 000), from two processes: one process may not hold that many either. */
const FLOOD = 27_000;
const FLOODERS = 3;

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, timeoutMs: 600_000 } as SandboxOpts;
}

/** 'ok', 'full' (a 503 BRIG_CAPACITY), or what else went wrong. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'ok';
  } catch (error) {
    const text = String((error as Error).message);
    return /BRIG_CAPACITY|\b503\b/.test(text) ? 'full' : text;
  }
}

async function listSandboxes(daemon: RunningDaemon): Promise<void> {
  const response = await fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': API_KEY } });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`${response.status} ${body}`);
}

describe('brig serve under a flood of idle connections', () => {
  test('27 000 idle connections: the daemon keeps serving (or answers 503), never dies, holds a bounded number of descriptors, and loses no sandbox', async (t) => {
    const state = tempWorkspace('brig-flood-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    const made: Sandbox[] = [];
    try {
      const sandbox = await Sandbox.create(opts(daemon));
      made.push(sandbox);
      await sandbox.files.write('/home/user/work.txt', 'hours of work');
      const port = Number(new URL(daemon.url).port);
      const floods = await Promise.all(Array.from({ length: FLOODERS }, () => startFlood('127.0.0.1', port, FLOOD / FLOODERS)));
      const outcomes: string[] = [];
      const descriptors: number[] = [];
      const heldAtEnd: number[] = [];
      try {
        for (let round = 0; round < 5; round++) {
          outcomes.push(await outcome(() => listSandboxes(daemon)));
          outcomes.push(await outcome(async () => assert.equal((await sandbox.commands.run('cat work.txt')).stdout, 'hours of work')));
          // A create spawns a jail: the spawn that killed the daemon when it was out of descriptors.
          outcomes.push(await outcome(async () => made.push(await Sandbox.create(opts(daemon)))));
          descriptors.push(readdirSync(`/proc/${daemon.process.pid}/fd`).length);
          assert.equal(daemon.process.exitCode, null, 'the daemon is alive');
        }
        heldAtEnd.push(...floods.map((flood) => flood.held()));
        assert.ok(heldAtEnd.every((held) => held > 0), 'the flood holds connections');
      } finally {
        await Promise.all(floods.map((flood) => flood.stop()));
      }
      t.diagnostic(`outcomes: ${outcomes.join(', ')}; daemon descriptors: ${descriptors.join(', ')}; flooders held: ${heldAtEnd.join(', ')}`);
      const unexpected = outcomes.filter((item) => item !== 'ok' && item !== 'full');
      assert.deepEqual(unexpected, [], 'every answer is served or a 503');
      assert.ok(outcomes.includes('ok'), `some requests were served: ${outcomes.join(', ')}`);
      // The caps: a quarter of the descriptor limit (20 000) for clients, the rest kept for sandboxes and the store.
      assert.ok(Math.max(...descriptors) < 10_000, `the daemon held at most ${Math.max(...descriptors)} descriptors`);
      // After the flood: everything still there, and served.
      assert.equal((await sandbox.commands.run('cat work.txt')).stdout, 'hours of work');
      assert.ok((await Sandbox.list(opts(daemon)).nextItems()).some((info) => info.sandboxId === sandbox.sandboxId), 'no sandbox was lost');
    } finally {
      for (const each of made) await each.kill().catch(() => {});
      await daemon.stop();
      state.remove();
    }
  });
});
