import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Sandbox, type SandboxOpts } from 'e2b';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { Conversation, freePort, listening } from '../helpers/ports.ts';
import { ENVD } from '../helpers/envd.ts';
import { createSandboxManager, type SandboxManager } from '../../src/daemon/sandboxes/index.ts';
import { PortPublisher } from '../../src/daemon/ports/index.ts';
import { openSqliteStore } from '../../src/daemon/store/index.ts';
import type { CommandRecorder, CommandStart, OutputStream } from '../../src/daemon/timeline/index.ts';

/**
 * Seed 000's ports against a real daemon, real jails and real TCP: the
 * agent port (a fresh shell per connection, its output back; seed 000's
 * agent.ts run unchanged), the monitor port (lines into one persistent
 * shell), the policy that says where they may listen, how they show and
 * close, a daemon restart, and clients and sandboxes that misbehave.
 */

const API_KEY = 'ports-key';
const AGENT_TS = fileURLToPath(new URL('../fixtures/agent.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Listed {
  id: string;
  state: string;
  ports: Array<{ kind: string; host: string; port: number; listening: boolean; error?: string }>;
}

interface Created {
  id: string;
  agent: number;
  monitor: number;
}

describe('brig serve: published ports', () => {
  const state = tempWorkspace('brig-ports-');
  const outside = tempWorkspace('brig-ports-host-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const env = () => ({ ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY });
  const brig = (args: string[]) => runBrig(args, { env: env() });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${daemon.url}${path}`, { method, headers: { 'x-api-key': API_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
  };
  const listed = async (): Promise<Listed[]> => (await api<Listed[]>('GET', '/v1/sandboxes?all=true')).body;
  /** A sandbox with both ports on free ports of 127.0.0.1 (picked again when another program took one meanwhile). */
  const create = async (extra: Record<string, unknown> = {}): Promise<Created> => {
    for (;;) {
      const [agent, monitor] = [await freePort(), await freePort()];
      const answer = await api<{ sandboxID: string; code?: string }>('POST', '/sandboxes', { templateID: 'base', agentPort: agent, monitorPort: String(monitor), ...extra });
      if (answer.status === 201) return { id: answer.body.sandboxID, agent, monitor };
      if (answer.body.code !== 'BRIG_PORT_IN_USE') throw new Error(`create: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
  };
  const processes = async (id: string) => (await Sandbox.connect(id, opts())).commands.list();
  const exec = async (id: string, script: string): Promise<string> => {
    const result = await brig(['exec', id, '--', 'bash', '-c', script]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
  });
  after(async () => {
    for (const sandbox of await listed().catch(() => [])) await api('DELETE', `/v1/sandboxes/${sandbox.id}?data=true`).catch(() => {});
    await daemon.stop();
    state.remove();
    outside.remove();
  });

  test("seed 000's agent.ts, unchanged, runs `ls -la` through the agent port and gets /home/user's listing back", async () => {
    const box = await create();
    await exec(box.id, 'echo hi > seed-000-marker.txt');
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', AGENT_TS, String(box.agent), 'ls -la'], { cwd: REPO }, (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }));
    });
    assert.equal(result.code, 0, result.stderr);
    const output = /--- Command Output ---\n([\s\S]*)\n----------------------/.exec(result.stdout)?.[1] ?? '';
    assert.match(output, /seed-000-marker\.txt$/m, result.stdout);
    assert.match(output, /^d\S+ +\d+ user +\S+ +\d+ .* \.$/m, 'the listing of . comes back');
    assert.doesNotMatch(output, /COMMAND_ENDED_EOC|ls -la/, 'no echo of what was sent');
  });

  test('each connection gets a shell of its own, as the sandbox\'s user in /home/user, that echoes nothing', async () => {
    const box = await create();
    const [one, two] = [await Conversation.open(box.agent), await Conversation.open(box.agent)];
    for (const conversation of [one, two]) conversation.send('echo "who=$(id -un) where=$(pwd) shell=$$ tty=$(tty)"; exit 3\n');
    await Promise.all([one.closed, two.closed]);
    const [first, second] = [one.text(), two.text()];
    for (const text of [first, second]) {
      assert.match(text, /who=user where=\/home\/user shell=\d+ tty=\/dev\/pts\/\d+/, text);
      assert.doesNotMatch(text, /\$\(id -un\)/, 'what was typed is not echoed');
    }
    assert.notEqual(/shell=(\d+)/.exec(first)?.[1], /shell=(\d+)/.exec(second)?.[1], 'two shells');
  });

  test('the client leaving kills its shell; the shell ending ends the connection', async () => {
    const box = await create();
    const conversation = await Conversation.open(box.agent);
    await conversation.first();
    conversation.send('echo "sleeping-$((40+2))"; exec sleep 1000\n');
    await conversation.until('sleeping-42');
    const shells = (await processes(box.id)).filter((process) => process.tag?.startsWith('brig-agent-port-'));
    assert.equal(shells.length, 1);
    conversation.socket.destroy();
    assert.ok(await pollUntil(async () => !(await processes(box.id)).some((process) => process.tag?.startsWith('brig-agent-port-'))), 'its shell is gone');
    const exiting = await Conversation.open(box.agent);
    exiting.send('exit 0\n');
    await exiting.closed;
    assert.ok(exiting.ended);
  });

  test('the monitor port: lines from several connections run in one shell, nothing comes back, and an exited shell is started again', async () => {
    const box = await create();
    // The daemon started it with the sandbox.
    assert.ok(await pollUntil(async () => (await processes(box.id)).some((process) => process.tag === 'brig-monitor')));
    const shell = (await processes(box.id)).find((process) => process.tag === 'brig-monitor');
    assert.equal(shell?.cmd, '/bin/bash');
    assert.deepEqual(shell?.args, ['-l']);
    const clients = await Promise.all([1, 2, 3].map(() => Conversation.open(box.monitor)));
    clients.forEach((client, index) => client.socket.end(`echo "line-${index}-$((${index} + 7))" >> /home/user/monitor.log\n`));
    await Promise.all(clients.map((client) => client.closed));
    for (const client of clients) assert.equal(client.bytes, 0, 'the monitor port sends nothing back');
    // A last line with no newline is typed too, whole.
    (await Conversation.open(box.monitor)).socket.end('echo "unterminated-$((5+5))" >> /home/user/monitor.log');
    assert.ok(await pollUntil(async () => (await exec(box.id, 'cat monitor.log 2>/dev/null || true')).split('\n').filter(Boolean).length === 4));
    assert.deepEqual((await exec(box.id, 'sort monitor.log')).trim().split('\n'), ['line-0-7', 'line-1-8', 'line-2-9', 'unterminated-10']);

    (await Conversation.open(box.monitor)).socket.end('exit\n');
    assert.ok(await pollUntil(async () => !(await processes(box.id)).some((process) => process.pid === shell?.pid)), 'the shell exited');
    (await Conversation.open(box.monitor)).socket.end('echo "again-$$" >> /home/user/monitor.log\n');
    assert.ok(await pollUntil(async () => /again-\d+/.test(await exec(box.id, 'cat monitor.log'))));
    const again = (await processes(box.id)).find((process) => process.tag === 'brig-monitor');
    assert.ok(again && again.pid !== shell?.pid, 'a new monitor shell');
  });

  test('network.publish: none refuses every port, loopback any other address; a taken port is refused; bad forms are 400; none leaves a sandbox or a listener', async () => {
    const before = (await listed()).length;
    const dirs = readdirSync(join(state.dir, 'sandboxes')).length;
    const port = await freePort();
    const refused = async (body: Record<string, unknown>, status: number, code: string, pattern?: RegExp): Promise<void> => {
      const answer = await api<{ code: string; message: string; hint: string }>('POST', '/sandboxes', { templateID: 'base', ...body });
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.equal(answer.body.code, code);
      assert.ok(answer.body.hint.length > 10, 'a hint');
      if (pattern) assert.match(answer.body.message, pattern);
    };
    await refused({ agentPort: port, policy: { network: { publish: 'none' } } }, 403, 'BRIG_PORT_NOT_ALLOWED', /publishes no ports/);
    await refused({ monitorPort: `0.0.0.0:${port}` }, 403, 'BRIG_PORT_NOT_ALLOWED', /loopback addresses only/);
    await refused({ agentPort: `[::]:${port}` }, 403, 'BRIG_PORT_NOT_ALLOWED');
    const lan = Object.values(networkInterfaces()).flat().find((address) => address && !address.internal && address.family === 'IPv4');
    if (lan) await refused({ agentPort: `${lan.address}:${port}` }, 403, 'BRIG_PORT_NOT_ALLOWED');
    for (const bad of ['0', '65536', 'abc', 'host.example:80', '::1:80', '[nope]:80', '127.0.0.1:', '1.2.3:80', '-1', ' 80']) {
      await refused({ agentPort: bad }, 400, 'BRIG_BAD_REQUEST');
    }
    await refused({ agentPort: 80.5 }, 400, 'BRIG_BAD_REQUEST');
    await refused({ policy: { network: { publish: 'everywhere' } }, agentPort: port }, 400, 'BRIG_POLICY_INVALID');
    // Held by someone else: refused, and theirs still.
    const holder = createServer((socket) => socket.end('holder\n'));
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    try {
      await refused({ agentPort: port }, 409, 'BRIG_PORT_IN_USE', /already in use/);
      // The first port bound, the second taken: the first is let go.
      const other = await freePort();
      await refused({ agentPort: other, monitorPort: port }, 409, 'BRIG_PORT_IN_USE');
      assert.equal(await listening(other), false, 'the port bound first was closed again');
      const held = await Conversation.open(port);
      await held.closed;
      assert.equal(held.text(), 'holder\n');
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
    assert.equal((await listed()).length, before, 'no sandbox left behind');
    assert.equal(readdirSync(join(state.dir, 'sandboxes')).length, dirs, 'no sandbox directory left behind');
    // all: any address of the host, 0.0.0.0 included (loopback too).
    const open = await create({ policy: { network: { publish: 'all' } }, monitorPort: `0.0.0.0:${await freePort()}` });
    const shown = (await listed()).find((sandbox) => sandbox.id === open.id);
    assert.deepEqual(shown?.ports.find((entry) => entry.kind === 'monitor')?.host, '0.0.0.0');
  });

  test('shown in brig ls, brig info and GET /v1/sandboxes; closed when the sandbox is killed, times out or dies', async () => {
    const box = await create();
    const shown = (await listed()).find((sandbox) => sandbox.id === box.id);
    assert.deepEqual(shown?.ports, [
      { kind: 'agent', host: '127.0.0.1', port: box.agent, listening: true },
      { kind: 'monitor', host: '127.0.0.1', port: box.monitor, listening: true },
    ]);
    const table = await brig(['ls']);
    assert.match(table.stdout, /^ID\s+NAME\s+STATE\s+TIER\s+CREATED\s+ENDS\s+PORTS$/m);
    assert.match(table.stdout, new RegExp(`^${box.id}\\s.*\\sagent=${box.agent},monitor=${box.monitor}$`, 'm'));
    const info = await brig(['info', box.id]);
    assert.match(info.stdout, new RegExp(`^Port: +agent 127\\.0\\.0\\.1:${box.agent}$`, 'm'));
    assert.match(info.stdout, new RegExp(`^Port: +monitor 127\\.0\\.0\\.1:${box.monitor}$`, 'm'));

    // Killed: closed by the time the kill answers.
    const connected = await Conversation.open(box.agent);
    await connected.first();
    assert.equal((await api('DELETE', `/sandboxes/${box.id}`)).status, 204);
    assert.equal(await listening(box.agent), false);
    assert.equal(await listening(box.monitor), false);
    await connected.closed;

    const short = await create({ timeout: 1 });
    assert.ok(await pollUntil(async () => !(await listening(short.monitor))), 'closed at its timeout');
    assert.equal(await listening(short.agent), false);

    const dying = await create({ timeout: 600 });
    const db = new Database(join(state.dir, 'brig.db'), { readonly: true });
    const handle = JSON.parse(db.prepare<[string], { handle: string }>('SELECT handle FROM sandboxes WHERE id = ?').get(dying.id)?.handle ?? '{}') as { pid: number };
    db.close();
    process.kill(handle.pid, 'SIGKILL');
    assert.ok(await pollUntil(async () => !(await listening(dying.monitor))), 'closed when it died');
    assert.deepEqual((await listed()).find((sandbox) => sandbox.id === dying.id)?.ports, [], 'a stopped sandbox lists no ports');
  });

  test('a sandbox cannot reach its own ports, and a connection gets a shell in the sandbox and nothing of the host', async () => {
    const secret = join(outside.dir, 'host-secret.txt');
    writeFileSync(secret, 'not for sandboxes\n');
    const box = await create();
    const reached = await exec(box.id, `(exec 3<>/dev/tcp/127.0.0.1/${box.agent}) 2>/dev/null && echo reached || echo refused; (exec 3<>/dev/tcp/127.0.0.1/${box.monitor}) 2>/dev/null && echo reached || echo refused`);
    assert.equal(reached, 'refused\nrefused\n', 'the sandbox\'s loopback is its own');
    const conversation = await Conversation.open(box.agent);
    conversation.send(`echo "uid=$(id -u) host=$(hostname) init=$(tr '\\0' ' ' < /proc/1/cmdline | cut -c1-14) secret=$(cat ${secret} 2>&1) key=$(env | grep -c BRIG_API_KEY)"; exit\n`);
    await conversation.closed;
    assert.match(conversation.text(), /uid=1000 host=brig init=\/usr\/bin\/bwrap secret=cat: \S+: No such file or directory key=0/, conversation.text());
  });

  test('garbage, clients that leave at once and floods of input leave the daemon serving; a flood of output waits for its reader', async () => {
    const box = await create();
    // Garbage: NULs, invalid UTF-8, escape sequences, lines far past any buffer.
    for (const port of [box.agent, box.monitor]) {
      const garbage = await Conversation.open(port);
      garbage.send(Buffer.concat([randomBytes(200_000), Buffer.from('\x00\xff\xfe\x1b[6n\x03\x04\x1c\n')]));
      garbage.socket.end();
      await garbage.closed;
    }
    // Gone before their shell started, or while it did.
    await Promise.all(Array.from({ length: 20 }, async (_, index) => {
      const early = await Conversation.open(index % 2 ? box.agent : box.monitor);
      if (index % 4 < 2) early.socket.destroy();
      else early.socket.resetAndDestroy();
    }));
    // A flood of input into a shell that reads it all.
    const flood = await Conversation.open(box.agent);
    await flood.first();
    // Raw, so no line discipline drops what passes its line buffer.
    flood.send('stty raw; echo "raw-$((1+1))"; exec head -c 33554432 > /dev/null\n');
    await flood.until('raw-2');
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    for (let sent = 0; sent < 32; sent++) if (!flood.socket.write(chunk)) await new Promise((resolve) => flood.socket.once('drain', resolve));
    await flood.closed;
    assert.ok(await pollUntil(async () => !(await processes(box.id)).some((process) => process.tag?.startsWith('brig-agent-port-'))), 'every agent shell ended with its connection');

    // A flood of output to a client that stops reading: the shell is held back, the daemon does not hold its output.
    const daemonPid = daemon.process.pid ?? 0;
    const before = vmRssKiB(daemonPid);
    const stalled = await Conversation.open(box.agent);
    stalled.send('echo "flooding-$((2+2))"; exec head -c 8589934592 /dev/zero\n');
    await stalled.until('flooding-4');
    stalled.socket.pause();
    let peak = before;
    // Long enough for the flood to fill every buffer on its way many times over, were nothing holding it back.
    for (let round = 0; round < 250; round++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      peak = Math.max(peak, vmRssKiB(daemonPid));
    }
    assert.ok((await processes(box.id)).some((process) => process.tag?.startsWith('brig-agent-port-')), 'the flood waits for its reader');
    assert.ok(peak - before < 48 * 1024, `the daemon's RSS grew by ${peak - before} KiB`);
    // It reads again: the flood comes on.
    const paused = stalled.bytes;
    stalled.socket.resume();
    while (stalled.bytes < paused + 16 * 1024 * 1024) await new Promise((resolve) => stalled.socket.once('data', resolve));
    stalled.socket.destroy();

    // Still serving: the API, and the port.
    assert.equal((await api('GET', '/v1/pool')).status, 200);
    const after = await Conversation.open(box.agent);
    after.send('echo "fine-$((2*21))"; exit\n');
    await after.until('fine-42');
  });
});

describe('brig serve: published ports across a restart', () => {
  const state = tempWorkspace('brig-ports-restart-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('after kill -9, the next daemon listens again, follows the same monitor shell and kills the agent shells the old one left', async () => {
    const [agent, monitor] = [await freePort(), await freePort()];
    const created = await runBrig(['create', '--agent-port', `localhost:${agent}`, '--monitor-port', String(monitor), '--timeout', '10m'], { env: { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY } });
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    const sandbox = await Sandbox.connect(id, opts());
    assert.ok(await pollUntil(async () => (await sandbox.commands.list()).some((process) => process.tag === 'brig-monitor')));
    const shell = (await sandbox.commands.list()).find((process) => process.tag === 'brig-monitor');
    const held = await Conversation.open(agent);
    held.send('echo "held-$((3*3))"; exec sleep 1000\n');
    await held.until('held-9');

    await daemon.stop('SIGKILL');
    await held.closed;
    assert.equal(await listening(agent), false);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });

    const again = await Sandbox.connect(id, opts());
    assert.ok(await pollUntil(async () => !(await again.commands.list()).some((process) => process.tag?.startsWith('brig-agent-port-'))), "the old daemon's agent shell is killed");
    const conversation = await Conversation.open(agent);
    conversation.send('echo "back-$((50+5))"; exit\n');
    await conversation.until('back-55');
    (await Conversation.open(monitor)).socket.end('echo "still-$$" > /home/user/still.txt\n');
    assert.ok(await pollUntil(async () => (await again.files.read('/home/user/still.txt').catch(() => '')) === `still-${shell?.pid}\n`), 'the same monitor shell ran it');
    const listedAgain = (await (await fetch(`${daemon.url}/v1/sandboxes`, { headers: { 'x-api-key': API_KEY } })).json()) as Listed[];
    assert.deepEqual(listedAgain.find((entry) => entry.id === id)?.ports.map((port) => [port.kind, port.port, port.listening]), [
      ['agent', agent, true],
      ['monitor', monitor, true],
    ]);
  });
});

interface Recorded {
  sandbox: string;
  start: CommandStart;
  pid: number | null;
  streams: Set<OutputStream>;
  output: Buffer[];
  input: Buffer[];
  end: { exitCode: number | null; status: string | null } | null;
}

/** A recorder that keeps every call, as the transcript's recorder would get them. */
function keepingRecorder(): { recorder: CommandRecorder; recorded: Recorded[] } {
  const recorded: Recorded[] = [];
  const recorder: CommandRecorder = {
    command(sandbox, start) {
      const entry: Recorded = { sandbox, start, pid: null, streams: new Set(), output: [], input: [], end: null };
      recorded.push(entry);
      return {
        started: (pid) => void (entry.pid = pid),
        output: (stream, data) => {
          entry.streams.add(stream);
          entry.output.push(Buffer.from(data));
        },
        input: (data) => void entry.input.push(Buffer.from(data)),
        ended: (end) => void (entry.end ??= end),
      };
    },
    input: () => {},
    recording: (sandbox, pid) => recorded.some((entry) => entry.sandbox === sandbox && entry.pid === pid && entry.end === null),
  };
  return { recorder, recorded };
}

describe('published ports: recording', () => {
  const state = tempWorkspace('brig-ports-recorded-');
  const { recorder, recorded } = keepingRecorder();
  const ports = new PortPublisher({ recorder });
  let manager: SandboxManager;

  before(async () => {
    manager = await createSandboxManager({ stateDir: state.dir, store: openSqliteStore(`${state.dir}/brig.db`), tier: 'jail', envdBundle: ENVD, egress: { gateway: null, nodeDir: join(REPO, 'dist/inside') }, ports });
  });
  after(async () => {
    for (const record of manager.listAll()) await manager.remove(record.id, { data: true }).catch(() => {});
    await ports.shutdown();
    await manager.close();
    state.remove();
  });

  test('every shell behind a port is recorded: what started (via, user, cwd, tag), its pid, its output, what was typed, its end', async () => {
    let created: { id: string; agent: number; monitor: number } | null = null;
    while (!created) {
      const [agent, monitor] = [await freePort(), await freePort()];
      const record = await manager.create({ ports: { agent: { host: '127.0.0.1', port: agent }, monitor: { host: '127.0.0.1', port: monitor } } }).catch((error: { code?: string }) => {
        if (error.code !== 'BRIG_PORT_IN_USE') throw error;
        return null;
      });
      if (record) created = { id: record.id, agent, monitor };
    }
    const conversation = await Conversation.open(created.agent);
    conversation.send('echo "recorded-$((4*4))"; exit 5\n');
    await conversation.closed;
    const agent = () => recorded.find((entry) => entry.start.via === 'agent-port');
    assert.ok(await pollUntil(async () => agent()?.end !== null && agent() !== undefined));
    const shell = agent() as Recorded;
    assert.equal(shell.sandbox, created.id);
    assert.match(shell.start.tag ?? '', /^brig-agent-port-/);
    assert.deepEqual({ ...shell.start, tag: null }, { argv: '/bin/bash -c stty -echo 2>/dev/null; exec /bin/bash --noediting -li', pty: true, via: 'agent-port', user: 'user', cwd: '/home/user', tag: null });
    assert.ok(Number.isInteger(shell.pid));
    assert.deepEqual([...shell.streams], ['pty']);
    assert.match(Buffer.concat(shell.output).toString(), /recorded-16/);
    assert.equal(Buffer.concat(shell.input).toString(), 'echo "recorded-$((4*4))"; exit 5\n');
    assert.deepEqual(shell.end, { exitCode: 5, status: 'exit status 5' });

    (await Conversation.open(created.monitor)).socket.end('echo "monitored-$((3+4))"\n');
    const monitor = () => recorded.find((entry) => entry.start.via === 'monitor');
    assert.ok(await pollUntil(async () => /monitored-7/.test(Buffer.concat(monitor()?.output ?? []).toString())));
    assert.deepEqual(monitor()?.start, { argv: '/bin/bash -l', pty: true, via: 'monitor', user: 'user', cwd: '/home/user', tag: 'brig-monitor' });
    assert.equal(Buffer.concat(monitor()?.input ?? []).toString(), 'echo "monitored-$((3+4))"\n');
    await manager.kill(created.id);
    assert.ok(await pollUntil(async () => monitor()?.end !== null), 'its end is recorded when the sandbox goes');
  });
});

/** Polls a condition until it holds, a bounded number of times (the machine may be slow: many tries, not a deadline). */
async function pollUntil(check: () => Promise<boolean>): Promise<boolean> {
  for (let attempt = 0; attempt < 600; attempt++) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

function vmRssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}
