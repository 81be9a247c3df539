import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { BRIG, collect, runBrig, startBrig, tempWorkspace, type Result } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

/**
 * Issue 10, item 12: `brig exec` ends on SIGTERM and SIGINT and takes its
 * command with it; a signal that comes before the pid came back still stops
 * the command; a sandbox that stopped answering (frozen with the cgroup
 * freezer here) ends the client with BRIG_SANDBOX_UNRESPONSIVE, not never.
 */

const API_KEY = 'brig_exec_signals_key';

describe('brig exec and signals', () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let id: string;
  const brig = (args: string[]): Promise<Result> => runBrig(args, { env });

  /** How many processes in the sandbox run this command line (its program named by name or by path: a terminal's is /usr/bin/…). */
  const running = async (commandLine: string): Promise<number> => {
    const script = `n=0; for f in /proc/[0-9]*/cmdline; do case "$(tr '\\0' ' ' < "$f" 2>/dev/null)" in "${commandLine} "|*"/${commandLine} ") n=$((n+1));; esac; done; echo $n`;
    const result = await brig(['exec', id, '--', 'sh', '-c', script]);
    assert.equal(result.code, 0, result.stderr);
    return Number(result.stdout.trim());
  };

  /** `brig exec` started, once its command runs in the sandbox. */
  const started = async (args: string[]): Promise<ReturnType<typeof startBrig>> => {
    const child = startBrig(['exec', '--json', id, '--', ...args], { env });
    await new Promise<void>((resolve) => {
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('"pid"')) resolve();
      });
    });
    return child;
  };

  before(async () => {
    state = tempWorkspace('brig-exec-signals-');
    // The jail runs as the workspace's owner, which must be able to reach it.
    chmodSync(state.dir, 0o755);
    daemon = await serveDaemon(join(state.dir, 'state'), { apiKey: API_KEY });
    env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
    const created = await brig(['create', '--timeout', '30m']);
    assert.equal(created.code, 0, created.stderr);
    id = created.stdout.trim();
  });
  after(async () => {
    thaw();
    await brig(['rm', '--data', id]);
    await daemon.stop();
    state.remove();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} ends the client and the command in the sandbox (exit 143)`, async () => {
      const line = `sleep 1${signal === 'SIGTERM' ? 1 : 2}01`;
      const child = await started(line.split(' '));
      assert.equal(await running(line), 1);
      child.kill(signal);
      const result = await collect(child);
      assert.equal(result.code, 143, result.stderr);
      assert.equal(await running(line), 0);
    });
  }

  test('a command that ignores SIGTERM gets SIGKILL after the grace period (exit 137)', async () => {
    const script = "trap '' TERM; while :; do sleep 1; done";
    const child = await started(['sh', '-c', script]);
    assert.equal(await running(`sh -c ${script}`), 1);
    child.kill('SIGTERM');
    const result = await collect(child);
    assert.equal(result.code, 137, result.stderr);
    assert.equal(await running(`sh -c ${script}`), 0);
  });

  test('a frozen sandbox ends the client with BRIG_SANDBOX_UNRESPONSIVE after the bounded wait', async () => {
    const child = await started(['sleep', '1301']);
    freeze();
    try {
      child.kill('SIGTERM');
      const result = await collect(child);
      assert.equal(result.code, 125, result.stderr);
      const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; hint: string } };
      assert.equal(error.code, 'BRIG_SANDBOX_UNRESPONSIVE');
      assert.match(error.message, /did not end sleep within 10 s of being asked to \(it may be frozen, or its envd hung\)/);
      assert.match(error.hint, /brig stop/);
    } finally {
      thaw();
    }
    // The signals went out before the client gave up: thawed, envd reads them, and the command ends.
    assert.equal(await running('sleep 1301'), 0);
  });

  test('a signal before the pid came back (the start request queued in a frozen sandbox) leaves nothing running', async () => {
    freeze();
    let result: Result | null = null;
    try {
      // The start request goes out within a moment of starting; its answer cannot come while envd is frozen.
      // A client killed by the signal itself had not yet set its handlers, so had sent nothing: tried again, later.
      for (let waitMs = 1000; result === null || result.code === null; waitMs *= 2) {
        const child = startBrig(['exec', id, '--', 'sleep', '1401'], { env });
        await new Promise((resolve) => setTimeout(resolve, waitMs));
        child.kill('SIGTERM');
        result = await collect(child);
      }
    } finally {
      thaw();
    }
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /BRIG_SANDBOX_UNRESPONSIVE/);
    // Thawed, envd reads the start request whose caller has left: it starts nothing (or kills it at once).
    assert.equal(await running('sleep 1401'), 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await running('sleep 1401'), 0);
  });

  test('brig shell: a SIGTERM from outside its terminal ends the session and its command in the sandbox', async () => {
    const term = pty.spawn(BRIG, ['shell', id, '--', 'sleep', '1501'], { name: 'xterm-256color', cols: 80, rows: 24, env: env as Record<string, string> });
    const exit = new Promise<{ exitCode: number; signal?: number }>((resolve) => term.onExit(resolve));
    let started = 0;
    for (let attempt = 0; attempt < 500 && started === 0; attempt++) started = await running('sleep 1501');
    assert.equal(started, 1);
    process.kill(term.pid, 'SIGTERM');
    // The shell's Ctrl-C is a key, so a signal from elsewhere means "end it": SIGKILL, 128 + 9.
    assert.equal((await exit).exitCode, 137);
    assert.equal(await running('sleep 1501'), 0);
  });

  /** The cgroup freezer over every process of the sandbox: v2's cgroup.freeze, or a v1 freezer cgroup they are moved into. */
  const FREEZER_V1 = '/sys/fs/cgroup/freezer';
  const frozenGroup = join(FREEZER_V1, `brig-test-frozen-${process.pid}`);
  function freeze(): void {
    const dir = sandboxCgroup(id) ?? '';
    if (existsSync(join(dir, 'cgroup.freeze'))) {
      writeFileSync(join(dir, 'cgroup.freeze'), '1');
      return;
    }
    assert.ok(existsSync(FREEZER_V1), 'this host has neither cgroup v2 nor a v1 freezer');
    mkdirSync(frozenGroup, { recursive: true });
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) writeFileSync(join(frozenGroup, 'cgroup.procs'), pid);
    // FREEZING means the kernel is still stopping tasks: asked again until it is done.
    do writeFileSync(join(frozenGroup, 'freezer.state'), 'FROZEN');
    while (readFileSync(join(frozenGroup, 'freezer.state'), 'utf8').trim() !== 'FROZEN');
  }
  function thaw(): void {
    const dir = id ? sandboxCgroup(id, false) : null;
    if (dir && existsSync(join(dir, 'cgroup.freeze'))) writeFileSync(join(dir, 'cgroup.freeze'), '0');
    if (!existsSync(frozenGroup)) return;
    writeFileSync(join(frozenGroup, 'freezer.state'), 'THAWED');
    // Thawed, envd may spawn (a child is born in this group): moved out until none is left.
    for (let attempt = 0; attempt < 1000; attempt++) {
      const pids = readFileSync(join(frozenGroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          writeFileSync(join(FREEZER_V1, 'cgroup.procs'), pid);
        } catch {
          // It exited meanwhile.
        }
      }
    }
    rmdirSync(frozenGroup);
  }
});

/** The sandbox's memory cgroup (v1) or its cgroup (v2): brig-<id>, under the daemon's own cgroup, which is ours. */
function sandboxCgroup(id: string, required = true): string | null {
  const roots = ['/sys/fs/cgroup/memory', '/sys/fs/cgroup'];
  for (const root of roots) {
    const found = findDir(root, `brig-${id}`, 6);
    if (found) return found;
  }
  if (required) assert.fail(`no cgroup brig-${id}`);
  return null;
}

function findDir(dir: string, name: string, depth: number): string | null {
  if (depth < 0) return null;
  let entries: string[];
  try {
    entries = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch {
    return null;
  }
  if (entries.includes(name)) return join(dir, name);
  for (const entry of entries) {
    const found = findDir(join(dir, entry), name, depth - 1);
    if (found) return found;
  }
  return null;
}
