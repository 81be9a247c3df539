import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, type SandboxOpts } from 'e2b';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import type { DaemonEvent } from '../../src/daemon/timeline/index.ts';

/**
 * The daemon's events (GET /v1/events, brig events) from real sandboxes:
 * each kind made to happen, then found in the log, in order, and followed
 * live over server-sent events.
 */

const API_KEY = 'events-key';

describe('brig serve: events', () => {
  const state = tempWorkspace('brig-events-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const api = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${daemon.url}${path}`, { method, headers: { 'x-api-key': API_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
  };
  const eventsOf = async (query: string): Promise<DaemonEvent[]> => (await api<DaemonEvent[]>('GET', `/v1/events?limit=1000&${query}`)).body;
  const until = async (check: () => Promise<boolean>): Promise<void> => {
    while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 50));
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('a sandbox\'s life: created, each command started and ended (argv, pid, exit code), killed — in order', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('echo hi; exit 3').catch(() => {});
    await sandbox.kill();
    const seen = await eventsOf(`sandbox=${sandbox.sandboxId}`);
    assert.deepEqual(seen.map((event) => event.type), ['created', 'exec.started', 'exec.ended', 'killed']);
    assert.ok(seen.every((event, index) => index === 0 || event.seq > (seen[index - 1]?.seq ?? 0)), 'seq rises');
    const [created, started, ended] = seen;
    assert.equal(created?.detail.template, 'base');
    assert.equal(created?.detail.tier, 'jail');
    assert.match(String(started?.detail.argv), /^\/bin\/bash -l -c echo hi; exit 3$/);
    assert.equal(started?.detail.pid, ended?.detail.pid);
    assert.equal(ended?.detail.exitCode, 3);
  });

  test('timeout, died (with its reason), out of memory, a violation', async () => {
    const short = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'base', timeout: 1 });
    const dying = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'base' });
    const hungry = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'base', policy: { resources: { memoryMiB: 64 } } });
    // Its jail killed from outside, as a crash would.
    const db = new Database(join(state.dir, 'brig.db'), { readonly: true });
    const handle = JSON.parse(db.prepare<[string], { handle: string }>('SELECT handle FROM sandboxes WHERE id = ?').get(dying.body.sandboxID)?.handle ?? '{}') as { pid: number };
    db.close();
    process.kill(handle.pid, 'SIGKILL');
    const sandbox = await Sandbox.connect(hungry.body.sandboxID, opts());
    await sandbox.commands.run(`perl -e '$x = "a" x (400 * 1024 * 1024)'`).catch(() => {});
    // envd refused a write by the jail: a filesystem violation.
    await sandbox.files.write('/usr/bin/brig-was-here', 'x').catch(() => {});
    await until(async () => (await eventsOf(`sandbox=${short.body.sandboxID}&type=timeout`)).length > 0);
    await until(async () => (await eventsOf(`sandbox=${dying.body.sandboxID}&type=died`)).length > 0);
    const [died, ...again] = await eventsOf(`sandbox=${dying.body.sandboxID}&type=died`);
    assert.deepEqual(again, [], 'one death, reported once');
    assert.match(String(died?.detail.reason), /ended by itself/);
    const oom = (await eventsOf(`sandbox=${hungry.body.sandboxID}&type=oom`))[0];
    assert.equal(oom?.detail.action, 'kill-process');
    assert.equal(oom?.detail.command, 'perl');
    const violation = (await eventsOf(`sandbox=${hungry.body.sandboxID}&type=violation`))[0];
    assert.equal(violation?.detail.kind, 'filesystem');
    assert.match(String(violation?.detail.target), /brig-was-here/);
    await sandbox.kill();
  });

  test('hung: commands running, no output, no CPU past timeouts.hungMs — flagged, or killed when onHung says so; busy and chatty ones are not', async () => {
    const make = async (timeouts: Record<string, unknown>): Promise<Sandbox> => {
      const created = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: 'base', policy: { timeouts } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return Sandbox.connect(created.body.sandboxID, opts());
    };
    const [busy, chatty, sleepy, doomed] = await Promise.all([make({ hungMs: 2000 }), make({ hungMs: 2000 }), make({ hungMs: 2000 }), make({ hungMs: 2000, onHung: 'kill' })]);
    // Followed, not awaited: the commands run on while the test looks at the events.
    const running = [
      busy.commands.run('while :; do :; done', { timeoutMs: 0 }),
      chatty.commands.run('while :; do echo still here; sleep 0.5; done', { timeoutMs: 0 }),
      sleepy.commands.run('sleep 600', { timeoutMs: 0 }),
      doomed.commands.run('sleep 600', { timeoutMs: 0 }),
    ].map((command) => command.catch(() => null));
    await until(async () => (await eventsOf(`sandbox=${sleepy.sandboxId}&type=hung`)).length > 0);
    await until(async () => (await eventsOf(`sandbox=${doomed.sandboxId}&type=died`)).length > 0);
    const [hung] = await eventsOf(`sandbox=${sleepy.sandboxId}&type=hung`);
    assert.equal(hung?.detail.action, 'flag');
    assert.equal(hung?.detail.commands, 1);
    assert.ok(Number(hung?.detail.silentMs) >= 2000, JSON.stringify(hung));
    assert.equal(await sleepy.isRunning(), true, 'flagged, not killed');
    const [died] = await eventsOf(`sandbox=${doomed.sandboxId}&type=died`);
    assert.match(String(died?.detail.reason), /^hung: its commands wrote nothing and it used no CPU for \d+ s \(timeouts\.hungMs 2000, onHung kill\)$/);
    const listed = (await api<Array<{ id: string; state: string; endReason: string | null }>>('GET', '/v1/sandboxes?all=true')).body.find((item) => item.id === doomed.sandboxId);
    assert.deepEqual([listed?.state, listed?.endReason], ['stopped', died?.detail.reason]);
    // As long as the silent one has been watched, the busy one and the chatty one were too.
    assert.deepEqual(await eventsOf(`sandbox=${busy.sandboxId}&type=hung`), [], 'a command using CPU is working');
    assert.deepEqual(await eventsOf(`sandbox=${chatty.sandboxId}&type=hung`), [], 'a command writing output is working');
    for (const sandbox of [busy, chatty, sleepy]) await sandbox.kill();
    await Promise.all(running);
    // Once: the sweep finding its processes gone while the kill still ended it is the same death.
    assert.equal((await eventsOf(`sandbox=${doomed.sandboxId}&type=died`)).length, 1);
    assert.equal((await eventsOf(`sandbox=${sleepy.sandboxId}&type=hung`)).length, 1);
  });

  test('unresponsive: a sandbox whose envd stops answering (stopped, as a process of its own user could) is reported', async () => {
    const sandbox = await Sandbox.create(opts());
    const envd = readFileSync(`/sys/fs/cgroup/pids/brig-${sandbox.sandboxId}/cgroup.procs`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number)
      // envd itself, not the bubblewraps whose arguments name it too.
      .find((pid) => {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return !argv[0]?.endsWith('bwrap') && argv.some((arg) => arg.endsWith('envd.cjs'));
      });
    assert.ok(envd, 'envd runs in the sandbox\'s cgroup');
    process.kill(envd, 'SIGSTOP');
    try {
      await until(async () => (await eventsOf(`sandbox=${sandbox.sandboxId}&type=unresponsive`)).length > 0);
    } finally {
      process.kill(envd, 'SIGCONT');
    }
    assert.equal((await sandbox.commands.run('echo back')).stdout, 'back\n');
    await sandbox.kill();
  });

  test('follow: what was kept after a seq, then live, as server-sent events with ids; a reconnect with Last-Event-ID misses nothing', async () => {
    const mark = (await eventsOf('')).at(-1)?.seq ?? 0;
    const controller = new AbortController();
    const response = await fetch(`${daemon.url}/v1/events?follow=true&after=${mark}&type=created,killed`, { headers: { 'x-api-key': API_KEY }, signal: controller.signal });
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const reader = response.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let text = '';
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('true');
    await sandbox.kill();
    while (!text.includes('event: killed')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    const got = [...text.matchAll(/event: (\S+)\nid: (\d+)\ndata: (.*)\n\n/g)].map(([, type, id, data]) => ({ type, id: Number(id), event: JSON.parse(data as string) as DaemonEvent }));
    assert.deepEqual(got.map((item) => item.type), ['created', 'killed'], 'filtered by type: no exec events');
    assert.ok(got.every((item) => item.id === item.event.seq && item.event.sandbox === sandbox.sandboxId));
    const resumed = await fetch(`${daemon.url}/v1/events?follow=true&type=created,killed`, { headers: { 'x-api-key': API_KEY, 'last-event-id': String(got[0]?.id) } });
    const resumedReader = resumed.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    let again = '';
    while (!again.includes('event: killed')) again += new TextDecoder().decode((await resumedReader.read()).value);
    await resumedReader.cancel();
    assert.deepEqual([...again.matchAll(/id: (\d+)/g)].map(([, id]) => Number(id)), [got[1]?.id], 'only what came after the last id seen');
  });

  test('brig events prints them, filtered; a type it does not know is BRIG_BAD_REQUEST', async () => {
    const env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
    const listed = await runBrig(['events', '--type', 'created', '--json'], { env });
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trim().split('\n').map((line) => JSON.parse(line) as DaemonEvent);
    assert.ok(lines.length >= 3 && lines.every((event) => event.type === 'created'), listed.stdout);
    const human = await runBrig(['events', '--type', 'exec.ended', '--limit', '1'], { env });
    assert.match(human.stdout, /^ +\d+ \S+ exec\.ended +sandbox=\S+ pid=\d+ exitCode=3 /);
    const refused = await api<{ code: string }>('GET', '/v1/events?type=created,exploded');
    assert.deepEqual([refused.status, refused.body.code], [400, 'BRIG_BAD_REQUEST']);
    const wrong = await runBrig(['events', '--type', 'exploded'], { env });
    assert.equal(wrong.code, 125);
    assert.match(wrong.stderr, /BRIG_BAD_REQUEST/);
  });
});
