import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { serverEvents, type ServerEvent } from '../../src/cli/client/server-events.ts';
import { collect, eventually, runBrig, startBrig, tempWorkspace, type Result } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_jobs_test_key';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const NO_SUCH_JOB = '00000000-0000-4000-8000-000000000000';

interface Status {
  job_id: string;
  state: string;
  kind: string;
  stdout: string;
  stderr: string;
  exit_code: number | null;
  reason: string | null;
  start_order: number | null;
}

/** A child's output as it comes, and its exit. */
function watch(child: ReturnType<typeof startBrig>): { out: () => string; err: () => string; done: Promise<Result> } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin?.end();
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { out: () => stdout, err: () => stderr, done };
}

describe('brig schedule, status, jobs and cancel over brig serve', () => {
  let state: { dir: string; remove: () => void };
  let host: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  const brig = (args: string[], input?: string): Promise<Result> => runBrig(args, { env, input, cwd: host.dir });
  const statusOf = async (id: string): Promise<Status> => {
    const result = await brig(['status', '--json', id]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as Status;
  };
  /** Polls until the job is in one of these states (bounded: 500 looks). */
  const until = async (id: string, states: string[]): Promise<Status> => {
    for (let look = 0; look < 500; look++) {
      const job = await statusOf(id);
      if (states.includes(job.state)) return job;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.fail(`job ${id} never reached ${states.join(' or ')}`);
  };
  const scheduled = (result: Result): string => {
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^[0-9a-f-]{36}\n$/);
    return result.stdout.trim();
  };

  before(async () => {
    state = tempWorkspace('brig-jobs-state-');
    host = tempWorkspace('brig-jobs-host-');
    // One job at a time: a second one waits queued behind a running one, which the cancel test shows.
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--jobs', '1', '--job-retention', '1h'] });
    env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
    writeFileSync(join(host.dir, 'three.sh'), 'echo hi; echo err >&2; exit 3\n');
  });
  after(async () => {
    // Nothing left running: every job not ended is cancelled, every sandbox removed.
    for (const stateName of ['running', 'queued']) {
      const left = JSON.parse((await brig(['jobs', '--json', '--state', stateName])).stdout) as Status[];
      for (const job of left) await brig(['cancel', job.job_id]);
    }
    const ids = (await brig(['ls', '--all', '--quiet'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await brig(['rm', '--data', ...ids]);
    await daemon.stop();
    state.remove();
    host.remove();
  });

  test('a shell job from a file: its id printed, then status shows how it ended and its output', async () => {
    const id = scheduled(await brig(['schedule', 'three.sh']));
    assert.match(id, UUID);
    const ended = await until(id, ['succeeded', 'failed']);
    assert.deepEqual({ state: ended.state, kind: ended.kind, exit_code: ended.exit_code, reason: ended.reason }, { state: 'failed', kind: 'shell', exit_code: 3, reason: 'exited' });
    const shown = await brig(['status', id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^ID:\\s+${id}$`, 'm'));
    assert.match(shown.stdout, /^State:\s+failed$/m);
    assert.match(shown.stdout, /^Kind:\s+shell$/m);
    assert.match(shown.stdout, /^Exit code:\s+3$/m);
    assert.match(shown.stdout, /^Reason:\s+exited$/m);
    assert.match(shown.stdout, /^Sandbox:\s+i[0-9a-z]+$/m);
    assert.match(shown.stdout, /--- stdout ---\nhi\n--- stderr ---\nerr\n$/);
    const asJson = await brig(['schedule', '--json', 'three.sh']);
    assert.match((JSON.parse(asJson.stdout) as { job_id: string }).job_id, UUID);
  });

  test('--wait with the code on stdin: its stdout and stderr passed on, its exit code brig\'s', async () => {
    const result = await brig(['schedule', '--kind', 'shell', '--wait', '-'], 'echo hi; echo err >&2; exit 3\n');
    assert.equal(result.code, 3, result.stderr);
    assert.equal(result.stdout, 'hi\n');
    assert.equal(result.stderr, 'err\n');
    const succeeded = await brig(['schedule', '--wait', '--kind', 'shell', '--env', 'GREETING=hello there', '-'], 'echo "$GREETING"');
    assert.equal(succeeded.code, 0, succeeded.stderr);
    assert.equal(succeeded.stdout, 'hello there\n');
    const lines = (await brig(['schedule', '--wait', '--json', '--kind', 'shell', '-'], 'echo out; exit 2')).stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.match(String(lines[0]?.job_id), UUID);
    assert.deepEqual(lines[1], { stdout: 'out\n' });
    const end = lines[2]?.status as Status;
    assert.deepEqual({ state: end.state, exit_code: end.exit_code, stdout: end.stdout }, { state: 'failed', exit_code: 2, stdout: undefined });
    assert.equal(lines.length, 3);
  });

  test('python and typescript: the extension picks the kind', async () => {
    writeFileSync(join(host.dir, 'answer.py'), 'import sys\nprint(6 * 7)\nsys.exit(4)\n');
    writeFileSync(join(host.dir, 'answer.ts'), 'const n: number = 6 * 7;\nconsole.log(n);\n');
    const python = await brig(['schedule', '--wait', '--json', 'answer.py']);
    assert.equal(python.code, 4, python.stderr);
    const pythonLines = python.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(pythonLines[1], { stdout: '42\n' });
    assert.equal((pythonLines[2]?.status as Status).kind, 'python');
    const typescript = await brig(['schedule', '--wait', 'answer.ts']);
    assert.equal(typescript.code, 0, typescript.stderr);
    assert.equal(typescript.stdout, '42\n');
    const [newest] = JSON.parse((await brig(['jobs', '--json', '--limit', '1'])).stdout) as Status[];
    assert.equal(newest?.kind, 'typescript');
  });

  test('status -f of a running job follows its output to the end and exits with its code', async () => {
    const id = scheduled(await brig(['schedule', '--kind', 'shell', '-'], 'echo one; sleep 2; echo two; echo bye >&2; exit 4'));
    const running = await until(id, ['running']);
    assert.equal(running.exit_code, null);
    const followed = await brig(['status', '-f', id]);
    assert.equal(followed.code, 4, followed.stderr);
    assert.equal(followed.stdout, 'one\ntwo\n');
    assert.equal(followed.stderr, 'bye\n');
    // An ended job: what was kept, then the end at once.
    const again = await brig(['status', '--follow', id]);
    assert.deepEqual({ code: again.code, stdout: again.stdout, stderr: again.stderr }, { code: 4, stdout: 'one\ntwo\n', stderr: 'bye\n' });
  });

  test('cancel ends a long job as cancelled: its followers exit 125 saying so, and the queue moves on', async () => {
    const id = scheduled(await brig(['schedule', '--kind', 'shell', '-'], 'echo started; sleep 600'));
    await until(id, ['running']);
    const waiting = watch(startBrig(['status', '-f', id], { env }));
    assert.ok(await eventually(() => waiting.out() === 'started\n'), waiting.out());
    // --jobs 1: the next one waits behind it.
    const next = scheduled(await brig(['schedule', '--kind', 'shell', '-'], 'echo next'));
    const queued = await brig(['jobs', '--state', 'queued']);
    assert.match(queued.stdout, new RegExp(`^${next}\\s+queued\\s+shell\\s+0\\s+\\d+s ago\\s+-\\s+-$`, 'm'));
    assert.match((await brig(['jobs', '--state', 'running'])).stdout, new RegExp(`^${id}\\s+running\\s`, 'm'));

    const cancelled = await brig(['cancel', id]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.equal(cancelled.stdout, 'failed (cancelled)\n');
    const followed = await waiting.done;
    assert.equal(followed.code, 125);
    assert.equal(followed.stdout, 'started\n');
    assert.match(followed.stderr, new RegExp(`^brig: job ${id} was cancelled \\[BRIG_JOB_FAILED\\]\\n {2}hint: `));
    const ended = await statusOf(id);
    assert.deepEqual({ state: ended.state, reason: ended.reason }, { state: 'failed', reason: 'cancelled' });
    const again = await brig(['cancel', id]);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /\[BRIG_JOB_ENDED\]/);
    const ran = await until(next, ['succeeded', 'failed']);
    assert.deepEqual({ state: ran.state, stdout: ran.stdout }, { state: 'succeeded', stdout: 'next\n' });
    assert.ok((ran.start_order ?? 0) > ((await statusOf(id)).start_order ?? Infinity), 'the queued job started after the cancelled one');
  });

  test('jobs: a table newest first, filtered by state and limited', async () => {
    const listed = JSON.parse((await brig(['jobs', '--json'])).stdout) as (Status & { created_at: string })[];
    assert.ok(listed.length >= 8, `${listed.length} jobs`);
    assert.deepEqual(listed.map((job) => job.created_at), listed.map((job) => job.created_at).sort().reverse());
    assert.equal('stdout' in (listed[0] ?? {}), false, 'the list leaves the output out');
    const table = await brig(['jobs']);
    assert.equal(table.code, 0, table.stderr);
    const rows = table.stdout.trimEnd().split('\n');
    assert.match(rows[0] ?? '', /^ID\s+STATE\s+KIND\s+PRIORITY\s+CREATED\s+DURATION\s+RESULT$/);
    assert.deepEqual(rows.slice(1).map((row) => row.split(/\s+/)[0]), listed.map((job) => job.job_id));
    assert.ok(rows.some((row) => /\sfailed\s+shell\s+0\s+\d+s ago\s+\d+s\s+exit 3$/.test(row)), table.stdout);
    assert.ok(rows.some((row) => /\sfailed\s+shell\s+0\s+\d+s ago\s+\d+s\s+cancelled \(137\)$/.test(row)), table.stdout);
    const succeeded = JSON.parse((await brig(['jobs', '--json', '--state', 'succeeded'])).stdout) as Status[];
    assert.ok(succeeded.length >= 3 && succeeded.every((job) => job.state === 'succeeded'), JSON.stringify(succeeded));
    const two = JSON.parse((await brig(['jobs', '--json', '--limit', '2'])).stdout) as Status[];
    assert.deepEqual(two.map((job) => job.job_id), listed.slice(0, 2).map((job) => job.job_id));
    const bad = await brig(['jobs', '--state', 'cancelled']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /\[BRIG_USAGE\]/);
  });

  test('a missing file, an unknown kind and a bad flag are BRIG_USAGE, and nothing is scheduled', async () => {
    const before = (JSON.parse((await brig(['jobs', '--json'])).stdout) as Status[]).length;
    writeFileSync(join(host.dir, 'prog.rb'), 'puts 1\n');
    const cases: [string[], string | undefined, RegExp][] = [
      [['schedule', 'absent.sh'], undefined, /^brig: cannot read absent\.sh: no such file \[BRIG_USAGE\]\n {2}hint: /],
      [['schedule', 'prog.rb'], undefined, /^brig: brig schedule cannot tell the kind of 'prog\.rb' \(not \.sh, \.py or \.ts\) \[BRIG_USAGE\]\n {2}hint: give --kind/],
      [['schedule', '--kind', 'ruby', 'prog.rb'], undefined, /^brig: --kind ruby: brig runs jobs of kind shell, python, typescript or gui \[BRIG_USAGE\]/],
      [['schedule', '-'], 'echo hi', /cannot tell the kind of code read from stdin \[BRIG_USAGE\]/],
      [['schedule', '--timeout', '0', 'three.sh'], undefined, /--timeout 0: .* \[BRIG_USAGE\]/],
      [['schedule', '--priority', '1001', 'three.sh'], undefined, /--priority 1001: .* \[BRIG_USAGE\]/],
      [['schedule', '--env', 'NOVALUE', 'three.sh'], undefined, /--env NOVALUE: expected NAME=VALUE \[BRIG_USAGE\]/],
    ];
    for (const [args, input, message] of cases) {
      const result = await brig(args, input);
      assert.equal(result.code, 125, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, message);
    }
    assert.equal((JSON.parse((await brig(['jobs', '--json'])).stdout) as Status[]).length, before);
  });

  test('an unknown id is BRIG_JOB_NOT_FOUND, in JSON when asked', async () => {
    for (const args of [['status', NO_SUCH_JOB], ['status', '-f', NO_SUCH_JOB], ['cancel', NO_SUCH_JOB], ['status', 'ghost']]) {
      const result = await brig(args);
      assert.equal(result.code, 125, args.join(' '));
      assert.match(result.stderr, /^brig: no job .*\[BRIG_JOB_NOT_FOUND\]\n {2}hint: /, args.join(' '));
    }
    const asJson = await brig(['status', '--json', NO_SUCH_JOB]);
    assert.equal(asJson.code, 125);
    assert.equal((JSON.parse(asJson.stderr) as { error: { code: string } }).error.code, 'BRIG_JOB_NOT_FOUND');
  });
});

describe('brig serve --jobs and --job-retention', () => {
  test('values out of range are BRIG_USAGE before anything starts', async () => {
    for (const args of [['--jobs', '0'], ['--jobs', '1001'], ['--jobs', 'many'], ['--job-retention', '0'], ['--job-retention', 'forever']]) {
      const result = await runBrig(['serve', '--port', '0', '--state', '/nonexistent/brig-state', ...args]);
      assert.equal(result.code, 125, args.join(' '));
      assert.match(result.stderr, new RegExp(`^brig: ${args[0]}.*\\[BRIG_USAGE\\]`), args.join(' '));
    }
  });

  test('an ended job is kept for --job-retention, and removed once that has passed', async () => {
    const state = tempWorkspace('brig-jobs-retention-');
    const serve = (retention: string): Promise<RunningDaemon> => serveDaemon(state.dir, { apiKey: API_KEY, args: ['--job-retention', retention] });
    const brigAt = (daemon: RunningDaemon, args: string[], input?: string): Promise<Result> => runBrig(args, { env: { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY }, input });
    let daemon = await serve('1h');
    try {
      const ran = await brigAt(daemon, ['schedule', '--json', '--wait', '--kind', 'shell', '-'], 'echo kept');
      assert.equal(ran.code, 0, ran.stderr);
      const id = (JSON.parse(ran.stdout.split('\n')[0] ?? '') as { job_id: string }).job_id;
      await daemon.stop();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // A restart sweeps at once: within an hour it stays…
      daemon = await serve('1h');
      const kept = await brigAt(daemon, ['status', id]);
      assert.equal(kept.code, 0, kept.stderr);
      assert.match(kept.stdout, /--- stdout ---\nkept\n/);
      await daemon.stop();
      // …past a second it is gone.
      daemon = await serve('1s');
      const gone = await brigAt(daemon, ['status', id]);
      assert.equal(gone.code, 125);
      assert.match(gone.stderr, /\[BRIG_JOB_NOT_FOUND\]/);
    } finally {
      await daemon.stop();
      state.remove();
    }
  });
});

describe('following a job over a connection that breaks or misbehaves', () => {
  let server: Server;
  let url: string;
  /** What the fake daemon does with GET /v1/jobs/:id/logs. */
  let logs: (response: ServerResponse) => void = () => {};

  before(async () => {
    server = createServer((request, response) => {
      if (request.method === 'GET' && /^\/v1\/jobs\/[0-9a-f-]+\/logs$/.test(request.url ?? '')) {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        logs(response);
      } else {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const follow = (): Promise<Result> => collect(startBrig(['status', '-f', NO_SUCH_JOB], { env: { ...process.env, BRIG_URL: url, BRIG_API_KEY: API_KEY } }));

  test('a connection cut mid-job is BRIG_DAEMON_UNAVAILABLE, after the output that came', async () => {
    logs = (response) => {
      response.write('event: stdout\ndata: "before the cut\\n"\n\n');
      setTimeout(() => response.socket?.destroy(), 100);
    };
    const cut = await follow();
    assert.equal(cut.code, 125);
    assert.equal(cut.stdout, 'before the cut\n');
    assert.match(cut.stderr, new RegExp(`^brig: the connection to the daemon at ${url.replace(/\./g, '\\.')} was cut while following job ${NO_SUCH_JOB} \\(.+\\) \\[BRIG_DAEMON_UNAVAILABLE\\]\\n {2}hint: the job goes on`));
    logs = (response) => response.end('event: stderr\ndata: "no end"\n\n');
    const ended = await follow();
    assert.equal(ended.code, 125);
    assert.match(ended.stderr, /^no end\nbrig: .*\(the stream ended before the job did\) \[BRIG_DAEMON_UNAVAILABLE\]/);
  });

  test('an event past 2 MiB is refused; one just under is taken whole', async () => {
    const event = (size: number): string => `event: stdout\ndata: "${'a'.repeat(size)}"\n\n`;
    const end = `event: end\ndata: ${JSON.stringify({ job_id: NO_SUCH_JOB, state: 'succeeded', exit_code: 0, reason: 'exited' })}\n\n`;
    logs = (response) => response.end(event(2 * 1024 * 1024 - 100) + end);
    const under = await follow();
    assert.equal(under.code, 0, under.stderr);
    assert.equal(under.stdout.length, 2 * 1024 * 1024 - 100);
    logs = (response) => response.end(event(2 * 1024 * 1024) + end);
    const over = await follow();
    assert.equal(over.code, 125);
    assert.equal(over.stdout, '');
    assert.match(over.stderr, /^brig: the daemon sent an event larger than 2097152 bytes \[BRIG_INTERNAL\]/);
  });
});

describe('serverEvents', () => {
  const parse = async (chunks: string[], maxBytes = 1024): Promise<ServerEvent[]> => {
    const events: ServerEvent[] = [];
    for await (const event of serverEvents(Readable.from(chunks.map((chunk) => Buffer.from(chunk))), maxBytes)) events.push(event);
    return events;
  };

  test('events split anywhere across chunks, CRLF lines, comments, several data lines', async () => {
    const text = ': hello\r\nevent: stdout\r\ndata: "a"\r\n\r\nevent: end\ndata: {"x":\ndata:1}\n\ndata: plain\n\n';
    const whole = await parse([text]);
    assert.deepEqual(whole, [
      { event: 'stdout', data: '"a"' },
      { event: 'end', data: '{"x":\n1}' },
      { event: 'message', data: 'plain' },
    ]);
    // Byte by byte, and with a character of several bytes cut in two.
    assert.deepEqual(await parse([...text]), whole);
    const bytes = Buffer.from('data: "é"\n\n');
    const split: ServerEvent[] = [];
    for await (const event of serverEvents(Readable.from([bytes.subarray(0, 8), bytes.subarray(8)]), 1024)) split.push(event);
    assert.deepEqual(split, [{ event: 'message', data: '"é"' }]);
  });

  test('the size of an event is counted across its lines, and before its end arrives', async () => {
    await assert.rejects(parse(['data: ' + 'x'.repeat(600) + '\n', 'data: ' + 'y'.repeat(600) + '\n\n']), /larger than 1024 bytes/);
    // No newline ever: refused once the bytes pass the bound, not held.
    await assert.rejects(parse(['data: ' + 'x'.repeat(1000), 'x'.repeat(1000)]), /larger than 1024 bytes/);
    assert.equal((await parse(['data: ' + 'x'.repeat(600) + '\n\n', 'data: ' + 'y'.repeat(600) + '\n\n'])).length, 2);
  });
});
