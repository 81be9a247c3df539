import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { BRIG, collect, eventually, runBrig, startBrig, tempWorkspace, type Result } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_cli_test_key';

/** `brig serve` with this suite's key and no warm pool (nothing left running after). */
const serve = (stateDir: string) => serveDaemon(stateDir, { apiKey: API_KEY });

/** A port nothing listens on: bound, then let go. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 1;
}

interface Listed {
  id: string;
  name: string | null;
  state: string;
  tier: string;
  workspace: string;
}

describe('the brig CLI over brig serve', () => {
  let state: { dir: string; remove: () => void };
  let host: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  const brig = (args: string[], input?: string): Promise<Result> => runBrig(args, { env, input, cwd: host.dir });
  const listed = async (): Promise<Listed[]> => JSON.parse((await brig(['ls', '--all', '--json'])).stdout) as Listed[];

  before(async () => {
    state = tempWorkspace('brig-cli-state-');
    host = tempWorkspace('brig-cli-host-');
    daemon = await serve(state.dir);
    env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
  });
  after(async () => {
    const ids = (await brig(['ls', '--all', '--quiet'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await brig(['rm', '--data', ...ids]);
    await daemon.stop();
    state.remove();
    host.remove();
  });

  test('create with a name, then ls as a table and as JSON', async () => {
    const created = await brig(['create', '--name', 'box', '--memory', '768m', '--timeout', '20m']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^i[0-9a-z]+\n$/);
    const id = created.stdout.trim();
    const table = await brig(['ls']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+NAME\s+STATE\s+TIER\s+CREATED\s+ENDS\n/);
    assert.match(table.stdout, new RegExp(`^${id}\\s+box\\s+running\\s+jail\\s+\\d+s ago\\s+in (19|20)m$`, 'm'));
    const sandboxes = JSON.parse((await brig(['ls', '--json'])).stdout) as Listed[];
    assert.deepEqual(sandboxes.map(({ id: each, name, state: status, tier }) => ({ id: each, name, state: status, tier })), [{ id, name: 'box', state: 'running', tier: 'jail' }]);
    const taken = await brig(['create', '--name', 'box']);
    assert.equal(taken.code, 125);
    assert.match(taken.stderr, /\[BRIG_NAME_TAKEN\]/);
  });

  test('exec: output on stdout and stderr, the exit code passed through, argv kept as given', async () => {
    const result = await brig(['exec', 'box', '--', 'sh', '-c', 'echo "out $1 $(id -un) $(pwd)"; echo err >&2; exit 3', 'sh', 'two words']);
    assert.equal(result.code, 3, result.stderr);
    assert.equal(result.stdout, 'out two words user /home/user\n');
    assert.equal(result.stderr, 'err\n');
    const killed = await brig(['exec', 'box', '--', 'sh', '-c', 'kill -9 $$']);
    assert.equal(killed.code, 137);
    const missing = await brig(['exec', 'box', '--', 'no-such-program']);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /\[BRIG_COMMAND_NOT_FOUND\]/);
    const asJson = await brig(['exec', '--json', '-e', 'GREETING=hello', '-w', '/tmp', 'box', '--', 'sh', '-c', 'echo "$GREETING from $(pwd)"; exit 2']);
    assert.equal(asJson.code, 2);
    const lines = asJson.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(typeof lines[0]?.pid, 'number');
    assert.deepEqual(lines.slice(1), [{ stdout: 'hello from /tmp\n' }, { exitCode: 2, status: 'exit status 2' }]);
  });

  test('exec streams output while the command still runs, and -i passes stdin on', async () => {
    const child = startBrig(['exec', '-i', 'box', '--', 'sh', '-c', 'echo first; read line; echo "got $line"; exit 4'], { env });
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    // The command is blocked on its stdin: "first" can only be here if it was streamed.
    assert.ok(await eventually(() => stdout.includes('first\n')), stdout);
    child.stdin?.end('go\n');
    assert.equal(await exit, 4);
    assert.equal(stdout, 'first\ngot go\n');
  });

  test('cp: a file both ways, byte for byte', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(host.dir, 'data.bin'), bytes);
    const up = await brig(['cp', 'data.bin', 'box:']);
    assert.equal(up.code, 0, up.stderr);
    const sum = await brig(['exec', 'box', '--', 'sha256sum', '/home/user/data.bin']);
    assert.equal(sum.stdout.split(' ')[0], createHash('sha256').update(bytes).digest('hex'));
    const down = await brig(['cp', 'box:data.bin', './back.bin']);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(readFileSync(join(host.dir, 'back.bin')).equals(bytes));
    const absent = await brig(['cp', 'box:/home/user/absent', '.']);
    assert.equal(absent.code, 125);
    assert.match(absent.stderr, /absent: no such file or directory in the sandbox \[BRIG_USAGE\]/);
  });

  test('cp: a directory both ways, with permission bits and links inside it', async () => {
    const tree = join(host.dir, 'tree');
    mkdirSync(join(tree, 'sub', 'empty'), { recursive: true });
    writeFileSync(join(tree, 'sub', 'run.sh'), '#!/bin/sh\necho ran\n');
    chmodSync(join(tree, 'sub', 'run.sh'), 0o750);
    writeFileSync(join(tree, 'notes.txt'), 'notes\n');
    symlinkSync('sub/run.sh', join(tree, 'link'));
    const up = await brig(['cp', 'tree', 'box:project']);
    assert.equal(up.code, 0, up.stderr);
    const ran = await brig(['exec', 'box', '--', '/home/user/project/link']);
    assert.equal(ran.stdout, 'ran\n', ran.stderr);
    // Inside, a link out of the tree: it must not come back to the host.
    await brig(['exec', 'box', '--', 'ln', '-s', '/etc/passwd', '/home/user/project/outside']);
    const down = await brig(['cp', '--json', 'box:project', 'again']);
    assert.equal(down.code, 0, down.stderr);
    const summary = JSON.parse(down.stdout) as { files: number; links: number; skipped: { path: string }[] };
    assert.equal(summary.files, 2);
    assert.equal(summary.links, 1);
    assert.deepEqual(summary.skipped.map((item) => item.path), ['/home/user/project/outside']);
    const again = join(host.dir, 'again');
    assert.equal(readFileSync(join(again, 'notes.txt'), 'utf8'), 'notes\n');
    assert.equal(statSync(join(again, 'sub', 'run.sh')).mode & 0o777, 0o750);
    assert.ok(statSync(join(again, 'sub', 'empty')).isDirectory());
    assert.equal(readlinkSync(join(again, 'link')), 'sub/run.sh');
    assert.equal(existsSync(join(again, 'outside')), false);
  });

  test('logs, stats and info describe the sandbox', async () => {
    const envdLog = await brig(['logs', '--envd', 'box']);
    assert.equal(envdLog.code, 0, envdLog.stderr);
    assert.match(envdLog.stdout, /envd listening/);
    // The timeline: the commands brig exec ran, with their output.
    const logs = await brig(['logs', 'box']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /^\d\d:\d\d:\d\d created · /m);
    assert.match(logs.stdout, /\$ \/home\/user\/project\/link {2}\[pid \d+[^\n]*\]\nran\n\d\d:\d\d:\d\d exit status 0 · /);
    const stats = await brig(['stats']);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /^ID\s+NAME\s+CPU\s+MEMORY\s+MEM %\s+PIDS\s+DISK\n/);
    assert.match(stats.stdout, /\sbox\s+\S+\s+[\d.]+\w+ \/ 768MiB\s/);
    const [usage] = JSON.parse((await brig(['stats', '--json', 'box'])).stdout) as { memoryBytes: number; memoryLimitBytes: number; pids: number; diskBytes: number }[];
    assert.ok(usage && usage.memoryBytes > 0 && usage.pids > 0 && usage.diskBytes > 3 * 1024 * 1024, JSON.stringify(usage));
    assert.equal(usage.memoryLimitBytes, 768 * 1024 * 1024);
    const info = await brig(['info', 'box']);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^Name:\s+box$/m);
    assert.match(info.stdout, /^Policy:\n {2}\{/m);
    assert.match(info.stdout, /^Web:\s+http:\/\/PORT-i[0-9a-f]+\.localhost:\d+\/\?brig_traffic_token=[A-Za-z0-9_-]{43}$/m, 'where a browser reaches its ports');
    const detail = JSON.parse((await brig(['info', '--json', 'box'])).stdout) as { name: string; policy: { resources: { memoryMiB: number } } };
    assert.equal(detail.policy.resources.memoryMiB, 768);
  });

  test('shell: a terminal that runs what is typed, follows a resize and ends with the shell', async () => {
    const term = pty.spawn(BRIG, ['shell', 'box'], { name: 'xterm-256color', cols: 100, rows: 30, cwd: host.dir, env: env as Record<string, string> });
    let output = '';
    term.onData((data) => (output += data));
    const exit = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
    assert.ok(await eventually(() => output.includes('$ ')), output);
    term.write('echo "hi-$((6 * 7))"; stty size\r');
    assert.ok(await eventually(() => output.includes('hi-42') && output.includes('30 100')), output);
    term.resize(120, 40);
    // The resize reaches the sandbox on its own path, not in order with what is typed: ask until it has arrived.
    while (!output.includes('40 120')) {
      term.write('stty size\r');
      await eventually(() => output.includes('40 120'), 50);
    }
    term.write('exit 5\r');
    assert.equal(await exit, 5, output);
  });

  test('stop keeps the workspace, rm --data deletes it, prune removes what is stopped', async () => {
    const [box] = (await listed()).filter((sandbox) => sandbox.name === 'box');
    assert.ok(box);
    const stopped = await brig(['stop', 'box']);
    assert.equal(stopped.code, 0, stopped.stderr);
    const table = await brig(['ls', '--all']);
    assert.match(table.stdout, new RegExp(`^${box.id}\\s+box\\s+stopped\\s`, 'm'));
    assert.doesNotMatch((await brig(['ls'])).stdout, /box/);
    assert.ok(existsSync(join(box.workspace, 'data.bin')), 'the workspace is kept');
    const removed = await brig(['rm', 'box', '--data']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(existsSync(box.workspace), false);
    assert.deepEqual(await listed(), []);

    const second = (await brig(['create', '--name', 'old', '--keep'])).stdout.trim();
    await brig(['stop', second]);
    const [old] = await listed();
    assert.ok(old && existsSync(old.workspace));
    const none = await brig(['prune', '--older-than', '1h', '--json']);
    assert.deepEqual(JSON.parse(none.stdout), []);
    const pruned = await brig(['prune']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.equal(pruned.stdout, `${second}\n`);
    assert.equal(existsSync(old.workspace), false);
    assert.deepEqual(await listed(), []);
  });

  test('an unknown sandbox is BRIG_SANDBOX_NOT_FOUND, in JSON when asked', async () => {
    const result = await brig(['info', '--json', 'ghost']);
    assert.equal(result.code, 125);
    assert.deepEqual(Object.keys((JSON.parse(result.stderr) as { error: object }).error), ['code', 'message', 'hint']);
    assert.match(result.stderr, /BRIG_SANDBOX_NOT_FOUND/);
  });
});

describe('the brig CLI with no daemon', () => {
  test('one error saying so and how to start one, exit 125', async () => {
    const port = await closedPort();
    const child = startBrig(['ls'], { env: { ...process.env, BRIG_URL: `http://127.0.0.1:${port}`, BRIG_API_KEY: API_KEY } });
    const result = await collect(child);
    assert.equal(result.code, 125);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^brig: no brig daemon answers at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\) \[BRIG_DAEMON_UNAVAILABLE\]\n {2}hint: start one with `brig serve`/);
  });
});
