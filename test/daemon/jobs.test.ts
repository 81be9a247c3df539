import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

/**
 * Seed 003's job API through a real daemon, driven as seed 003's clients
 * drive it: plain fetch, POST /schedule then GET /status/{job_id}. Every
 * job runs in a real sandbox; nothing here waits with a time limit.
 */

const API_KEY = 'jobs-key';

interface Status {
  job_id: string;
  state: 'queued' | 'running' | 'succeeded' | 'failed';
  stdout: string;
  stderr: string;
  exit_code: number | null;
  reason: string | null;
  error: string | null;
  sandbox_id: string | null;
  attempts: number;
  start_order: number | null;
  priority: number;
  started_at: string | null;
  ended_at: string | null;
  stdout_dropped: number;
  output_gap: boolean;
  artifacts: Array<{ index: number; path: string; bytes: number | null; error?: string }>;
}

function client(daemon: () => RunningDaemon) {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${daemon().url}${path}`, { method, headers: { 'x-api-key': API_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
  };
  const schedule = async (job: Record<string, unknown>): Promise<string> => {
    const answer = await call<{ job_id: string }>('POST', '/schedule', job);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.match(answer.body.job_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUID v4');
    return answer.body.job_id;
  };
  const status = async (id: string): Promise<Status> => (await call<Status>('GET', `/status/${id}`)).body;
  /** Polls /status as seed 003's clients do, until the job has ended. */
  const ended = async (id: string): Promise<Status> => {
    for (;;) {
      const job = await status(id);
      if (job.state === 'succeeded' || job.state === 'failed') return job;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { call, schedule, status, ended };
}

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 50));
}

/**
 * A host directory every job's sandbox may write (policy readWrite): how
 * jobs tell the test what they did. Each job makes files of its own there:
 * each sandbox is a host user of its own, and one's file is not another's.
 */
function sharedDir(): { dir: string; policy: Record<string, unknown>; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'brig-jobs-shared-'));
  chmodSync(dir, 0o777);
  return { dir, policy: { filesystem: { readWrite: [dir] } }, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('jobs: seed 003\'s POST /schedule and GET /status/{job_id}', () => {
  const state = tempWorkspace('brig-jobs-');
  let daemon: RunningDaemon;
  const api = client(() => daemon);

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 1 });
  });
  after(async () => {
    await daemon.stop();
    state.remove();
  });

  test('shell, python and typescript jobs run; the seed\'s fields keep their shapes, brig\'s come beside them', async () => {
    const shell = await api.schedule({ kind: 'shell', code: 'echo "hi from $0"; echo err >&2; exit 3' });
    const python = await api.schedule({ kind: 'python', code: 'import sys\nprint(6 * 7)\nprint("warn", file=sys.stderr)' });
    const typescript = await api.schedule({ kind: 'typescript', code: 'interface Answer { value: number }\nconst answer: Answer = { value: 6 * 7 };\nawait new Promise((resolve) => setTimeout(resolve, 10));\nconsole.log(`answer ${answer.value}`);' });
    const [one, two, three] = [await api.ended(shell), await api.ended(python), await api.ended(typescript)];
    assert.deepEqual([one.state, one.stdout, one.stderr, one.exit_code, one.reason], ['failed', 'hi from .brig-job/main.sh\n', 'err\n', 3, 'exited']);
    assert.deepEqual([two.state, two.stdout, two.stderr, two.exit_code], ['succeeded', '42\n', 'warn\n', 0]);
    assert.deepEqual([three.state, three.stdout, three.exit_code], ['succeeded', 'answer 42\n', 0], three.stderr);
    for (const job of [one, two, three]) {
      assert.equal(job.attempts, 1);
      assert.ok(job.started_at && job.ended_at && job.sandbox_id, JSON.stringify(job));
    }
    // The program is in its sandbox's transcript too, kept after the sandbox is gone.
    const timeline = (await api.call<Array<Record<string, unknown>>>('GET', `/v1/sandboxes/${one.sandbox_id}/timeline`)).body;
    const command = timeline.find((entry) => entry.type === 'command');
    assert.deepEqual([command?.via, command?.tag, command?.argv], ['job', shell, '/bin/bash .brig-job/main.sh']);
    assert.deepEqual(timeline.filter((entry) => entry.type === 'output').map((entry) => [entry.stream, entry.text]).sort(), [['stderr', 'err\n'], ['stdout', 'hi from .brig-job/main.sh\n']]);
    assert.equal(timeline.find((entry) => entry.type === 'exit')?.exitCode, 3);
  });

  test('each job has a fresh sandbox, destroyed after it', async () => {
    const first = await api.ended(await api.schedule({ kind: 'shell', code: 'touch left-behind; ls' }));
    const second = await api.ended(await api.schedule({ kind: 'shell', code: 'ls left-behind 2>&1; true' }));
    assert.notEqual(first.sandbox_id, second.sandbox_id);
    assert.match(second.stdout, /No such file/, 'the second job does not see the first one\'s files');
    await until(async () => !(await api.call<Array<{ id: string }>>('GET', '/v1/sandboxes')).body.some((sandbox) => sandbox.id === first.sandbox_id || sandbox.id === second.sandbox_id));
  });

  test('files go in first, env is set, artifacts come back; one that is missing says why', async () => {
    const id = await api.schedule({
      kind: 'shell',
      code: 'cat input/data.txt; echo "$GREETING"; mkdir -p out; printf "result:%s" "$(cat input/data.txt)" > out/result.txt; head -c 100000 /dev/urandom > out/random.bin',
      files: { 'input/data.txt': 'payload' },
      env: { GREETING: 'hello' },
      artifacts: ['out/result.txt', 'out/random.bin', 'out/never-made.txt'],
    });
    const job = await api.ended(id);
    assert.equal(job.state, 'succeeded', job.stderr);
    assert.equal(job.stdout, 'payloadhello\n');
    assert.deepEqual(job.artifacts.map((artifact) => [artifact.path, artifact.bytes]), [['out/result.txt', 14], ['out/random.bin', 100000], ['out/never-made.txt', null]]);
    assert.match(job.artifacts[2]?.error ?? '', /never-made/);
    const result = await fetch(`${daemon.url}/v1/jobs/${id}/artifacts/0`, { headers: { 'x-api-key': API_KEY } });
    assert.equal(await result.text(), 'result:payload');
    const random = await fetch(`${daemon.url}/v1/jobs/${id}/artifacts/1`, { headers: { 'x-api-key': API_KEY } });
    assert.equal((await random.arrayBuffer()).byteLength, 100000);
    assert.equal((await fetch(`${daemon.url}/v1/jobs/${id}/artifacts/2`, { headers: { 'x-api-key': API_KEY } })).status, 404);
  });

  test('a timeout ends it as timed_out; a cancel ends a running and a queued job as cancelled', async () => {
    const slow = await api.ended(await api.schedule({ kind: 'shell', code: 'echo started; sleep 600', timeout: 2 }));
    assert.deepEqual([slow.state, slow.reason, slow.stdout], ['failed', 'timed_out', 'started\n']);
    const running = await api.schedule({ kind: 'shell', code: 'echo started; sleep 600' });
    await until(async () => (await api.status(running)).stdout === 'started\n');
    const cancelled = await api.call<Status>('POST', `/v1/jobs/${running}/cancel`);
    assert.equal(cancelled.status, 200);
    assert.deepEqual([cancelled.body.state, cancelled.body.reason], ['failed', 'cancelled']);
    const again = await api.call<{ code: string }>('POST', `/v1/jobs/${running}/cancel`);
    assert.deepEqual([again.status, again.body.code], [409, 'BRIG_JOB_ENDED']);
    // Cancelled at once: queued, its sandbox being made, its files going in, or its program starting — it ends, whichever.
    for (let round = 0; round < 4; round++) {
      const id = await api.schedule({ kind: 'shell', code: 'sleep 600' });
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, round * 15));
      const answer = await api.call<Status>('POST', `/v1/jobs/${id}/cancel`);
      assert.deepEqual([answer.body.state, answer.body.reason], ['failed', 'cancelled'], JSON.stringify(answer.body));
    }
  });

  test('the output is capped per stream, and what was dropped is counted, never silently', async () => {
    const job = await api.ended(await api.schedule({ kind: 'python', code: 'import sys\nsys.stdout.write("é" * (768 * 1024))' }));
    assert.equal(job.state, 'succeeded', job.stderr);
    assert.equal(Buffer.byteLength(job.stdout), 1024 * 1024, 'the first MiB is kept, and no character is cut in two');
    assert.equal(job.stdout_dropped, 512 * 1024);
  });

  test('wait answers once the job ends; the log stream replays what was kept, then follows to the end', async () => {
    const id = await api.schedule({ kind: 'shell', code: 'echo one; sleep 1; echo two >&2; sleep 1; echo three' });
    await until(async () => (await api.status(id)).stdout === 'one\n');
    const response = await fetch(`${daemon.url}/v1/jobs/${id}/logs`, { headers: { 'x-api-key': API_KEY } });
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const text = await response.text();
    const events = [...text.matchAll(/event: (\w+)\ndata: (.*)\n\n/g)].map(([, event, data]) => [event, JSON.parse(data as string)] as const);
    assert.deepEqual(events.filter(([event]) => event !== 'end').map(([event, data]) => `${event}:${data as string}`).join(''), 'stdout:one\nstderr:two\nstdout:three\n');
    const end = events.at(-1);
    assert.equal(end?.[0], 'end');
    assert.equal((end?.[1] as Status).state, 'succeeded');
    const waited = await api.call<Status>('GET', `/v1/jobs/${id}/wait?timeout=60`);
    assert.equal(waited.body.state, 'succeeded');
    const quick = await api.schedule({ kind: 'shell', code: 'sleep 600' });
    const notYet = await api.call<Status>('GET', `/v1/jobs/${quick}/wait?timeout=0`);
    assert.notEqual(notYet.body.state, 'succeeded');
    await api.call('POST', `/v1/jobs/${quick}/cancel`);
  });

  test('bad requests are refused with codes: an unknown kind, a missing code, an unknown field or job, a bad policy', async () => {
    const refusals: Array<[unknown, number, string]> = [
      [{ kind: 'ruby', code: 'puts 1' }, 400, 'BRIG_BAD_REQUEST'],
      [{ kind: 'shell' }, 400, 'BRIG_BAD_REQUEST'],
      [{ kind: 'shell', code: 'true', colour: 'blue' }, 400, 'BRIG_BAD_REQUEST'],
      [{ kind: 'shell', code: 'true', policy: { resources: { memoryMiB: 'lots' } } }, 400, 'BRIG_POLICY_INVALID'],
      [{ kind: 'shell', code: 'true', files: { '': 'x' } }, 400, 'BRIG_BAD_REQUEST'],
    ];
    for (const [body, status, code] of refusals) {
      const answer = await api.call<{ code: string }>('POST', '/schedule', body);
      assert.deepEqual([answer.status, answer.body.code], [status, code], JSON.stringify(body));
    }
    // A gui job needs the desktop template: without it, the job fails saying so (test/images/desktop.test.ts runs one).
    const gui = await api.schedule({ kind: 'gui', code: 'xdotool key a' });
    const ended = await api.call<Status>('GET', `/v1/jobs/${gui}/wait?timeout=600`);
    assert.equal(ended.body.state, 'failed');
    assert.equal(ended.body.reason, 'error');
    assert.match(ended.body.error ?? '', /unknown template 'desktop'/);
    const unknown = await api.call<{ code: string }>('GET', '/status/6f1c1c8e-0d7e-4a8e-9a55-4c1f0e4f8d11');
    assert.deepEqual([unknown.status, unknown.body.code], [404, 'BRIG_JOB_NOT_FOUND']);
    assert.equal((await fetch(`${daemon.url}/status/6f1c1c8e-0d7e-4a8e-9a55-4c1f0e4f8d11`)).status, 401, 'the API key is required');
  });
});

describe('jobs: the queue', () => {
  const state = tempWorkspace('brig-jobs-queue-');
  const shared = sharedDir();
  let daemon: RunningDaemon;
  const api = client(() => daemon);

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 4, args: ['--jobs', '4'] });
  });
  after(async () => {
    await daemon.stop();
    state.remove();
    shared.remove();
  });

  test('200 queued jobs go through 4 at a time, the highest priority first and equal ones first in, first out', async () => {
    // Four jobs hold every slot until the rest are queued.
    const gate = join(shared.dir, 'go');
    const blockers = await Promise.all(Array.from({ length: 4 }, () => api.schedule({ kind: 'shell', code: `until [ -e ${gate} ]; do sleep 0.05; done`, policy: shared.policy, priority: 1000 })));
    await until(async () => (await Promise.all(blockers.map(api.status))).every((job) => job.state === 'running'));
    const queued: Array<{ id: string; priority: number; seq: number }> = [];
    for (let seq = 0; seq < 196; seq++) {
      const priority = [0, 5, -3, 5, 10, 0, -3][seq % 7] as number;
      queued.push({ id: await api.schedule({ kind: 'shell', code: 'true', priority }), priority, seq });
    }
    writeFileSync(gate, '');
    const jobs = await Promise.all([...blockers, ...queued.map((job) => job.id)].map(api.ended));
    assert.ok(jobs.every((job) => job.state === 'succeeded'), JSON.stringify(jobs.filter((job) => job.state !== 'succeeded')));
    const byId = new Map(jobs.map((job) => [job.job_id, job]));
    const expected = [...queued].sort((a, b) => b.priority - a.priority || a.seq - b.seq).map((job) => job.id);
    const started = [...queued].sort((a, b) => (byId.get(a.id)?.start_order ?? 0) - (byId.get(b.id)?.start_order ?? 0)).map((job) => job.id);
    assert.deepEqual(started, expected, 'started by priority, then by arrival');
    // Never more than 4 at once: at each start, the jobs started before it and not yet ended.
    const spans = jobs.map((job) => [Date.parse(job.started_at as string), Date.parse(job.ended_at as string)] as const);
    const most = Math.max(...spans.map(([begin]) => spans.filter(([otherBegin, otherEnd]) => otherBegin <= begin && otherEnd > begin).length));
    assert.ok(most <= 4, `${most} ran at once`);
  });
});

describe('jobs: a daemon killed with -9 and restarted', () => {
  const state = tempWorkspace('brig-jobs-restart-');
  const shared = sharedDir();
  let daemon: RunningDaemon;
  const api = client(() => daemon);
  const serve = () => serveDaemon(state.dir, { apiKey: API_KEY, pool: 0, args: ['--jobs', '2'] });
  /** The job ids that began a run, once per run (the files `PREFIX-<id>.XXXX` they made), sorted. */
  const runs = (prefix: string): string[] =>
    readdirSync(shared.dir)
      .filter((name) => name.startsWith(`${prefix}-`))
      .map((name) => name.slice(prefix.length + 1, -5))
      .sort();

  before(async () => {
    daemon = await serve();
  });
  after(async () => {
    await daemon.stop();
    state.remove();
    shared.remove();
  });

  test('loses no job and runs none twice: queued ones stay queued, running ones are reattached', async () => {
    const gate = join(shared.dir, 'go');
    const code = `mktemp ${shared.dir}/ran-$BRIG_JOB_ID.XXXX >/dev/null; echo before; until [ -e ${gate} ]; do sleep 0.05; done; echo after`;
    const ids: string[] = [];
    for (let index = 0; index < 8; index++) ids.push(await api.schedule({ kind: 'shell', code, policy: shared.policy }));
    await until(async () => (await Promise.all(ids.map(api.status))).filter((job) => job.stdout === 'before\n').length === 2);
    await daemon.stop('SIGKILL');
    daemon = await serve();
    writeFileSync(gate, '');
    const jobs = await Promise.all(ids.map(api.ended));
    assert.deepEqual(jobs.map((job) => job.state), ids.map(() => 'succeeded'), JSON.stringify(jobs.map((job) => [job.state, job.reason, job.error])));
    const reattached = jobs.filter((job) => job.output_gap);
    assert.equal(reattached.length, 2, 'the two that ran through the restart were reattached');
    for (const job of reattached) assert.match(job.stdout, /after\n$/, 'and followed to their end');
    assert.deepEqual(runs('ran'), [...ids].sort(), 'each ran exactly once');
    assert.ok(jobs.every((job) => job.attempts === 1));
  });

  test('a running job whose sandbox died meanwhile: failed as lost, or queued again when retryable', async () => {
    rmSync(join(shared.dir, 'go'), { force: true });
    const gate = join(shared.dir, 'go');
    const code = `mktemp ${shared.dir}/lost-$BRIG_JOB_ID.XXXX >/dev/null; until [ -e ${gate} ]; do sleep 0.05; done`;
    const plain = await api.schedule({ kind: 'shell', code, policy: shared.policy });
    const retryable = await api.schedule({ kind: 'shell', code, policy: shared.policy, retryable: true });
    // Both programs have begun (each made its file), so the retryable one's second run is a second run.
    await until(() => runs('lost').length === 2);
    const sandboxes = (await Promise.all([plain, retryable].map(api.status))).map((job) => job.sandbox_id as string);
    await daemon.stop('SIGKILL');
    // While no daemon runs, their sandboxes are killed from outside (their jails' first process: the rest go with it).
    const db = new Database(join(state.dir, 'brig.db'), { readonly: true });
    for (const id of sandboxes) {
      const row = db.prepare<[string], { handle: string }>('SELECT handle FROM sandboxes WHERE id = ?').get(id);
      process.kill((JSON.parse(row?.handle ?? '{}') as { pid: number }).pid, 'SIGKILL');
    }
    db.close();
    daemon = await serve();
    writeFileSync(gate, '');
    const [lostJob, retried] = [await api.ended(plain), await api.ended(retryable)];
    assert.deepEqual([lostJob.state, lostJob.reason], ['failed', 'lost']);
    assert.match(lostJob.error ?? '', /sandbox was gone/);
    assert.deepEqual([retried.state, retried.attempts], ['succeeded', 2], JSON.stringify(retried));
    const lines = runs('lost');
    assert.equal(lines.filter((line) => line === retryable).length, 2, 'the retryable one ran again, as it allowed, and says so (attempts 2)');
    assert.equal(lines.filter((line) => line === plain).length, 1);
  });
});
