import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, type SandboxOpts } from 'e2b';
import * as pty from 'node-pty';
import { BRIG, runBrig, tempWorkspace } from '../helpers/brig.ts';
import { Conversation, freePort } from '../helpers/ports.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import type { TimelineEntry } from '../../src/daemon/timeline/index.ts';
import { encodeEnvelope } from '../../src/protocol/index.ts';

/**
 * Transcripts from real sandboxes through the e2b SDK and brig logs: each
 * command with its output and exit, a terminal's input and output, the cap
 * (marked, never silent, the file bounded), the timeline after the sandbox
 * is gone, paging, and following over server-sent events.
 */

const API_KEY = 'timeline-key';
/** The smallest cap brig serve takes: a command writing 1 MiB passes it. */
const CAP_BYTES = 64 * 1024;

describe('brig serve: transcripts', () => {
  const state = tempWorkspace('brig-timeline-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const timeline = async (id: string, query = ''): Promise<TimelineEntry[]> => {
    const response = await fetch(`${daemon.url}/v1/sandboxes/${id}/timeline?${query}`, { headers: { 'x-api-key': API_KEY } });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as TimelineEntry[];
  };
  const brig = (args: string[]) => runBrig(args, { env: { BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY } });
  const until = async (check: () => Promise<boolean>): Promise<void> => {
    while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 50));
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--transcript-max', '64k'] });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('a command: argv, user, cwd, stdout and stderr as they came, its exit; after the sandbox was created, before it was killed', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('echo out; echo err >&2; exit 3', { cwd: '/tmp', user: 'user' }).catch(() => {});
    await sandbox.kill();
    const entries = await timeline(sandbox.sandboxId);
    assert.deepEqual(entries.map((entry) => entry.type), ['event', 'command', 'output', 'output', 'exit', 'event']);
    assert.deepEqual(entries.map((entry) => entry.seq), [1, 2, 3, 4, 5, 6]);
    const [created, command, ...rest] = entries;
    assert.ok(created?.type === 'event' && created.event === 'created');
    assert.ok(command?.type === 'command');
    assert.equal(command.argv, '/bin/bash -l -c echo out; echo err >&2; exit 3');
    assert.equal(command.user, 'user');
    assert.equal(command.cwd, '/tmp');
    assert.equal(command.via, 'api');
    const outputs = rest.filter((entry) => entry.type === 'output');
    assert.deepEqual(outputs.map((entry) => [entry.stream, entry.text, entry.cmd]).sort(), [['stderr', 'err\n', command.seq], ['stdout', 'out\n', command.seq]]);
    const exit = rest.find((entry) => entry.type === 'exit');
    assert.ok(exit?.type === 'exit');
    assert.deepEqual([exit.cmd, exit.pid, exit.exitCode, exit.status], [command.seq, command.pid, 3, 'exit status 3']);
    assert.ok(entries.at(-1)?.type === 'event' && entries.at(-1)?.type === 'event' && (entries.at(-1) as { event: string }).event === 'killed');
    // Kept after the sandbox and its record are gone: by id.
    const shown = await brig(['logs', sandbox.sandboxId]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /\$ \/bin\/bash -l -c echo out; echo err >&2; exit 3 {2}\[pid \d+, user, \/tmp\]\nout\n(err\n)?/);
    assert.match(shown.stdout, /exit status 3 · pid \d+, \d+ ms\n/);
    assert.match(shown.stdout, /killed\n$/);
  });

  test('a terminal: what was typed and what it showed, UTF-8 split across chunks joined again', async () => {
    const sandbox = await Sandbox.create(opts());
    let seen = '';
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: (data) => void (seen += Buffer.from(data).toString()), timeoutMs: 0 });
    await sandbox.pty.sendInput(terminal.pid, Buffer.from('echo typed-$((6*7)) "h\u00e9llo"\n'));
    await until(async () => /typed-42 h\u00e9llo/.test(seen));
    await sandbox.pty.sendInput(terminal.pid, Buffer.from('exit\n'));
    await terminal.wait().catch(() => {});
    const entries = await timeline(sandbox.sandboxId);
    const command = entries.find((entry) => entry.type === 'command');
    assert.ok(command?.type === 'command' && command.pty, JSON.stringify(entries));
    const typed = entries.filter((entry) => entry.type === 'input').map((entry) => entry.text).join('');
    assert.equal(typed, 'echo typed-$((6*7)) "h\u00e9llo"\nexit\n');
    const shown = entries.filter((entry) => entry.type === 'output' && entry.cmd === command.seq).map((entry) => (entry.type === 'output' ? entry.text : '')).join('');
    assert.match(shown, /typed-42 h\u00e9llo/);
    assert.ok(entries.some((entry) => entry.type === 'exit' && entry.cmd === command.seq));
    await sandbox.kill();
  });

  test('input streamed to a terminal (StreamInput) is recorded as it passes', async () => {
    const sandbox = await Sandbox.create(opts());
    let seen = '';
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: (data) => void (seen += Buffer.from(data).toString()), timeoutMs: 0 });
    const token = (await (await fetch(`${daemon.url}/sandboxes/${sandbox.sandboxId}`, { headers: { 'x-api-key': API_KEY } })).json() as { envdAccessToken: string }).envdAccessToken;
    const body = Buffer.concat([
      encodeEnvelope({ start: { process: { pid: terminal.pid } } }),
      encodeEnvelope({ data: { input: { pty: Buffer.from('echo streamed-$((7*6))\n').toString('base64') } } }),
      encodeEnvelope({}, 2),
    ]);
    const response = await fetch(`${daemon.url}/process.Process/StreamInput`, { method: 'POST', headers: { 'e2b-sandbox-id': sandbox.sandboxId, 'x-access-token': token, 'content-type': 'application/connect+json', 'connect-protocol-version': '1' }, body });
    assert.equal(response.status, 200, await response.text());
    await until(async () => seen.includes('streamed-42'));
    const typed = (await timeline(sandbox.sandboxId)).filter((entry) => entry.type === 'input').map((entry) => (entry.type === 'input' ? entry.text : ''));
    assert.deepEqual(typed, ['echo streamed-$((7*6))\n']);
    await sandbox.kill();
  });

  test('the cap: output past it is not recorded, and says so; commands after it are still named; the file stays bounded', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('head -c 1048576 /dev/zero | tr "\\0" x');
    await sandbox.commands.run('echo after');
    const entries = await timeline(sandbox.sandboxId);
    const truncated = entries.filter((entry) => entry.type === 'truncated');
    assert.equal(truncated.length, 1, 'once per command');
    const exits = entries.filter((entry) => entry.type === 'exit');
    assert.ok(exits[0]?.type === 'exit' && (exits[0].droppedBytes ?? 0) > 900 * 1024, JSON.stringify(exits[0]));
    const commands = entries.filter((entry) => entry.type === 'command').map((entry) => (entry.type === 'command' ? entry.argv : ''));
    assert.deepEqual(commands, ['/bin/bash -l -c head -c 1048576 /dev/zero | tr "\\0" x', '/bin/bash -l -c echo after']);
    const recorded = entries.filter((entry) => entry.type === 'output').reduce((sum, entry) => sum + (entry.type === 'output' ? entry.text.length : 0), 0);
    assert.ok(recorded < CAP_BYTES, `${recorded} bytes of output kept`);
    const files = readdirSync(join(state.dir, 'transcripts'));
    assert.ok(files.includes(`${sandbox.sandboxId}.jsonl`));
    assert.ok(statSync(join(state.dir, 'transcripts', `${sandbox.sandboxId}.jsonl`)).size <= CAP_BYTES + 256 * 1024);
    await sandbox.kill();
  });

  test('paging: after a seq, since a time, the last N; brig logs --tail, --since and --json; a bad flag is BRIG_USAGE', async () => {
    const sandbox = await Sandbox.create(opts());
    for (const word of ['one', 'two', 'three']) await sandbox.commands.run(`echo ${word}`);
    const all = await timeline(sandbox.sandboxId);
    assert.deepEqual((await timeline(sandbox.sandboxId, 'after=3&limit=2')).map((entry) => entry.seq), [4, 5]);
    assert.deepEqual((await timeline(sandbox.sandboxId, 'tail=2')).map((entry) => entry.seq), all.slice(-2).map((entry) => entry.seq));
    const since = all.find((entry) => entry.type === 'output' && entry.text === 'three\n')?.time ?? '';
    assert.ok((await timeline(sandbox.sandboxId, `since=${encodeURIComponent(since)}`)).every((entry) => entry.time >= since));
    const tail = await brig(['logs', '--json', '--tail', '1', sandbox.sandboxId]);
    assert.deepEqual(tail.stdout.trim().split('\n').map((line) => (JSON.parse(line) as TimelineEntry).seq), [all.at(-1)?.seq]);
    const recent = await brig(['logs', '--since', '1h', sandbox.sandboxId]);
    assert.match(recent.stdout, /one\n[\s\S]*two\n[\s\S]*three\n/);
    const bad = await brig(['logs', '--tail', 'many', sandbox.sandboxId]);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /BRIG_USAGE/);
    const unknown = await brig(['logs', 'no-such-sandbox']);
    assert.match(unknown.stderr, /BRIG_SANDBOX_NOT_FOUND/);
    await sandbox.kill();
  });

  test('the shells behind the agent and monitor ports are in the transcript, with what their connections typed', async () => {
    const [agentPort, monitorPort] = [await freePort(), await freePort()];
    const response = await fetch(`${daemon.url}/sandboxes`, { method: 'POST', headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' }, body: JSON.stringify({ templateID: 'base', agentPort: String(agentPort), monitorPort: String(monitorPort) }) });
    const { sandboxID } = (await response.json()) as { sandboxID: string };
    assert.equal(response.status, 201);
    const agent = await Conversation.open(agentPort);
    agent.send('echo agent-$((40+2))\n');
    await agent.until('agent-42');
    agent.socket.destroy();
    const monitor = await Conversation.open(monitorPort);
    monitor.send('echo monitor-$((40+3))\n');
    monitor.socket.end();
    await until(async () => (await timeline(sandboxID)).some((entry) => entry.type === 'output' && entry.text.includes('monitor-43')));
    const entries = await timeline(sandboxID);
    const commandOf = (via: string) => entries.find((entry) => entry.type === 'command' && entry.via === via);
    const [agentShell, monitorShell] = [commandOf('agent-port'), commandOf('monitor')];
    assert.ok(agentShell && monitorShell, JSON.stringify(entries));
    const typed = (cmd: number) => entries.filter((entry) => entry.type === 'input' && entry.cmd === cmd).map((entry) => (entry.type === 'input' ? entry.text : '')).join('');
    assert.equal(typed(agentShell.seq), 'echo agent-$((40+2))\n');
    assert.equal(typed(monitorShell.seq), 'echo monitor-$((40+3))\n');
    assert.ok(entries.some((entry) => entry.type === 'output' && entry.cmd === agentShell.seq && entry.text.includes('agent-42')));
    await until(async () => (await timeline(sandboxID)).some((entry) => entry.type === 'exit' && entry.cmd === agentShell.seq));
    await Sandbox.kill(sandboxID, opts());
  });

  test('on a terminal, brig logs lets colours through and nothing else the sandbox wrote: no title, no clipboard write, no bare control characters', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run(`printf 'a\\033]0;evil-title\\007b\\033]52;c;ZXZpbA==\\033\\\\c\\033[31mred\\033[0m\\rd\\n'`);
    const recorded = (await timeline(sandbox.sandboxId)).find((entry) => entry.type === 'output');
    assert.ok(recorded?.type === 'output' && recorded.text.includes('\x1b]0;evil-title'), 'the transcript keeps what was written');
    const term = pty.spawn(BRIG, ['logs', sandbox.sandboxId], { name: 'xterm-256color', cols: 200, rows: 30, env: { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY } as Record<string, string> });
    let shown = '';
    term.onData((data) => (shown += data));
    await new Promise<void>((resolve) => term.onExit(() => resolve()));
    assert.ok(shown.includes('abc\x1b[31mred\x1b[0m\\x0dd'), JSON.stringify(shown));
    assert.ok(!shown.includes('\x1b]'), 'no operating-system command reaches the terminal');
    await sandbox.kill();
  });

  test('follow: server-sent events with ids, kept then live; a reconnect with Last-Event-ID misses nothing; brig logs -f ends with the sandbox', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('echo before');
    const following = brig(['logs', '-f', sandbox.sandboxId]);
    const controller = new AbortController();
    const response = await fetch(`${daemon.url}/v1/sandboxes/${sandbox.sandboxId}/timeline?follow=true`, { headers: { 'x-api-key': API_KEY }, signal: controller.signal });
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const reader = response.body?.getReader();
    let text = '';
    const read = async (pattern: RegExp): Promise<void> => {
      while (!pattern.test(text)) text += new TextDecoder().decode((await reader?.read())?.value);
    };
    await read(/data: .*"before\\n"/);
    await sandbox.commands.run('echo during');
    await read(/data: .*"during\\n"/);
    controller.abort();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    assert.deepEqual(ids, ids.map((_, index) => index + 1), 'every entry once, in order');
    await sandbox.commands.run('echo missed');
    const resumed = await fetch(`${daemon.url}/v1/sandboxes/${sandbox.sandboxId}/timeline?follow=true`, { headers: { 'x-api-key': API_KEY, 'last-event-id': String(ids.at(-1)) } });
    const again = resumed?.body?.getReader();
    let more = '';
    while (!/"missed\\n"/.test(more)) more += new TextDecoder().decode((await again?.read())?.value);
    assert.equal([...more.matchAll(/^id: (\d+)$/gm)][0]?.[1], String((ids.at(-1) ?? 0) + 1));
    await again?.cancel();
    await sandbox.kill();
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /before\n[\s\S]*during\n[\s\S]*missed\n[\s\S]*killed\n$/);
  });
});
