import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { EGRESS_DIR_INSIDE, EGRESS_SOCKET_NAME } from '../../src/protocol/index.ts';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_limits_key';
const MiB = 1024 * 1024;

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/** E2B's create with a brig policy on top (the SDK has no field for it), then the SDK connected to it. */
async function createWith(daemon: RunningDaemon, policy: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown>; sandbox: Sandbox | null }> {
  const response = await fetch(`${daemon.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': API_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', timeout: 600, policy }),
  });
  const body = (await response.json()) as Record<string, unknown>;
  const sandbox = response.status === 201 ? await Sandbox.connect(String(body.sandboxID), opts(daemon)) : null;
  return { status: response.status, body, sandbox };
}

function mountedAt(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === path);
}

describe('brig serve: limits across sandboxes', { skip: process.getuid?.() !== 0 && 'a workspace quota needs a root daemon (a loop mount)' }, () => {
  test('a sandbox writing past resources.diskMiB gets ENOSPC, and the host disk holds at most its quota', async () => {
    const state = tempWorkspace('brig-limits-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    try {
      const { status, body, sandbox } = await createWith(daemon, { resources: { diskMiB: 64 } });
      assert.equal(status, 201, JSON.stringify(body));
      assert.ok(sandbox);
      const root = `${state.dir}/sandboxes/${sandbox.sandboxId}`;
      // 200 MiB into a 64 MiB workspace.
      const fill = await sandbox.commands.run('dd if=/dev/zero of=big bs=1M count=200 2>&1; echo "exit $?"; ls -A', { timeoutMs: 0 }).catch((error: { stdout?: string }) => error);
      const output = String((fill as { stdout?: string }).stdout);
      assert.match(output, /No space left on device/);
      assert.match(output, /exit 1/);
      assert.doesNotMatch(output, /lost\+found/, 'the home holds nothing of the filesystem\'s own');
      const image = statSync(`${root}/workspace.img`);
      assert.ok(image.blocks * 512 <= 64 * MiB, `the host holds ${Math.round((image.blocks * 512) / MiB)} MiB for it`);
      assert.ok(statSync(`${root}/workspace/big`).size < 64 * MiB);
      // Its filesystem cannot carry a setuid program or a device to the host.
      const options = (await sandbox.commands.run('grep " /home/user " /proc/self/mountinfo')).stdout;
      assert.match(options, /nosuid/);
      assert.match(options, /nodev/);
      // The space comes back: the sandbox can carry on once it deletes.
      assert.equal((await sandbox.commands.run('rm big && echo ok > small && cat small')).stdout, 'ok\n');
      await sandbox.kill();
      assert.equal(mountedAt(`${root}/workspace`), false, 'unmounted');
      assert.equal(existsSync(root), false, 'its image and directory removed');
    } finally {
      await daemon.stop();
      state.remove();
    }
  });

  test('one allowlist sandbox holds at most 256 of the daemon\'s descriptors through its egress socket', async (t) => {
    const state = tempWorkspace('brig-limits-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    try {
      const { status, body, sandbox } = await createWith(daemon, { network: { mode: 'allowlist', allow: ['example.com'] } });
      assert.equal(status, 201, JSON.stringify(body));
      assert.ok(sandbox);
      const descriptors = () => readdirSync(`/proc/${daemon.process.pid}/fd`).length;
      const before = descriptors();
      // Three processes, 900 idle connections each, straight to the egress socket: 2700 asked for.
      const hold = `perl -MIO::Socket::UNIX -e 'my @s; for (1..900) { my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or next; push @s, $s } sleep 600' ${EGRESS_DIR_INSIDE}/${EGRESS_SOCKET_NAME}`;
      await sandbox.commands.run(`for i in 1 2 3; do ${hold} >/dev/null 2>&1 & done; sleep 3`);
      const during = descriptors();
      t.diagnostic(`daemon descriptors: ${before} before, ${during} while the sandbox floods its egress socket`);
      assert.ok(during - before <= 256 + 16, `the sandbox made the daemon hold ${during - before} more descriptors`);
      await sandbox.kill();
    } finally {
      await daemon.stop();
      state.remove();
    }
  });

  test('ten sandboxes\' tasks stay within the daemon\'s task budget, and the eleventh create is refused with 503 BRIG_CAPACITY', async (t) => {
    const state = tempWorkspace('brig-limits-');
    const daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--max-tasks', '1000'] });
    const made: Sandbox[] = [];
    try {
      for (let index = 0; index < 10; index++) {
        const { status, body, sandbox } = await createWith(daemon, { resources: { pids: 100 } });
        assert.equal(status, 201, JSON.stringify(body));
        if (sandbox) made.push(sandbox);
      }
      const refused = await createWith(daemon, { resources: { pids: 100 } });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.code, 'BRIG_CAPACITY');
      assert.match(String(refused.body.message), /tasks .*1000 of 1000/);
      assert.match(String(refused.body.hint), /--max-tasks/);
      // Each one forks as far as it can: 300 sleepers each, 3000 asked for in all (the shell gives up when fork fails).
      await Promise.all(made.map((sandbox) => sandbox.commands.run('for i in $(seq 300); do sleep 600 & done 2>/dev/null', { timeoutMs: 0 }).catch(() => null)));
      let tasks = 0;
      for (const sandbox of made) {
        const response = await fetch(`${daemon.url}/v1/sandboxes/${sandbox.sandboxId}/stats`, { headers: { 'X-API-KEY': API_KEY } });
        const stats = (await response.json()) as { pids: number };
        assert.ok(stats.pids <= 100, `a sandbox holds ${stats.pids} tasks`);
        tasks += stats.pids;
      }
      t.diagnostic(`ten sandboxes hold ${tasks} tasks (budget 1000)`);
      assert.ok(tasks > 500 && tasks <= 1000, `ten sandboxes hold ${tasks} tasks in all`);
    } finally {
      for (const sandbox of made) await sandbox.kill().catch(() => {});
      await daemon.stop();
      state.remove();
    }
  });
});
