import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CommandExitError, InvalidArgumentError, type CommandHandle, type Sandbox } from 'e2b';
import { encodeEnvelope, EnvelopeReader, ENVELOPE_FLAG } from '../../src/protocol/index.ts';
import { eventually } from '../helpers/brig.ts';
import { ENVD_MODES, envdSkip, envdWhere, useEnvd, type TestEnvd } from '../helpers/envd.ts';

/** process.Process through the real e2b SDK, and its hostile cases through plain Connect calls. */

const JSON_HEADERS = { 'content-type': 'application/json', 'connect-protocol-version': '1' };
const STREAM_HEADERS = { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' };

async function unary(envd: TestEnvd, method: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${envd.url}/process.Process/${method}`, { method: 'POST', headers: JSON_HEADERS, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

interface StreamMessage {
  end: boolean;
  body: Record<string, unknown>;
}

/** A server stream read message by message, at the pace the test chooses. */
class ProcessStream {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly envelopes = new EnvelopeReader(1 << 30);
  private readonly queue: StreamMessage[] = [];
  private readonly abort: AbortController;
  stdout = '';
  stderr = '';
  bytes = 0;

  private constructor(response: Response, abort: AbortController) {
    if (!response.body) throw new Error('no response body');
    this.reader = response.body.getReader();
    this.abort = abort;
  }

  static async open(envd: TestEnvd, method: 'Start' | 'Connect', message: unknown, headers: Record<string, string> = {}): Promise<ProcessStream> {
    const abort = new AbortController();
    const response = await fetch(`${envd.url}/process.Process/${method}`, { method: 'POST', headers: { ...STREAM_HEADERS, ...headers }, body: new Uint8Array(encodeEnvelope(message)), signal: abort.signal });
    return new ProcessStream(response, abort);
  }

  /** The next message, or null when the stream is over. */
  async next(): Promise<StreamMessage | null> {
    while (this.queue.length === 0) {
      const { done, value } = await this.reader.read();
      if (done) return null;
      this.bytes += value.length;
      for (const envelope of this.envelopes.push(Buffer.from(value))) {
        this.queue.push({ end: (envelope.flags & ENVELOPE_FLAG.endStream) !== 0, body: JSON.parse(envelope.data.toString()) as Record<string, unknown> });
      }
    }
    const message = this.queue.shift() as StreamMessage;
    const data = (message.body.event as { data?: { stdout?: string; stderr?: string } } | undefined)?.data;
    if (data?.stdout) this.stdout += Buffer.from(data.stdout, 'base64').toString();
    if (data?.stderr) this.stderr += Buffer.from(data.stderr, 'base64').toString();
    return message;
  }

  /** Read to the end: every event, then the end-of-stream message. */
  async all(): Promise<StreamMessage[]> {
    const messages: StreamMessage[] = [];
    for (let message = await this.next(); message; message = await this.next()) messages.push(message);
    return messages;
  }

  close(): void {
    this.abort.abort();
  }
}

function eventOf(message: StreamMessage | undefined): Record<string, Record<string, unknown>> {
  return (message?.body.event ?? {}) as Record<string, Record<string, unknown>>;
}

function startMessage(command: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { process: { cmd: '/bin/bash', args: ['-c', command] }, ...extra };
}

function vmRssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}

/** Bounded polling of an asynchronous condition (no wall-clock limits in tests). */
async function until(check: () => Promise<boolean>, attempts = 500, pauseMs = 20): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return check();
}

async function pidsRunning(sandbox: Sandbox): Promise<number[]> {
  return (await sandbox.commands.list()).map((process) => process.pid);
}

/** Whether a pid is alive in envd's own pid namespace, asked from inside the sandbox. */
async function aliveInSandbox(sandbox: Sandbox, pid: number): Promise<boolean> {
  const result = await sandbox.commands.run(`kill -0 ${pid} 2>/dev/null && echo alive || echo gone`);
  return result.stdout.trim() === 'alive';
}

for (const mode of ENVD_MODES) {
  const where = envdWhere(mode);

  describe(`commands through the e2b SDK, envd ${where}`, { skip: envdSkip(mode) }, () => {
    let envd: TestEnvd;
    let sandbox: Sandbox;
    useEnvd(mode, (started) => ({ envd, sandbox } = started));

    test('run in the foreground gives stdout, stderr and the exit code', async () => {
      const result = await sandbox.commands.run('echo out; echo err >&2; echo more');
      assert.equal(result.exitCode, 0);
      assert.equal(result.stdout, 'out\nmore\n');
      assert.equal(result.stderr, 'err\n');
      assert.equal(result.error, undefined);
    });

    test('a non-zero exit throws CommandExitError with the output and a Go-like status', async () => {
      const error = await sandbox.commands.run('echo partial; echo broken >&2; exit 3').catch((caught: unknown) => caught);
      assert.ok(error instanceof CommandExitError, String(error));
      assert.equal(error.exitCode, 3);
      assert.equal(error.error, 'exit status 3');
      assert.equal(error.stdout, 'partial\n');
      assert.equal(error.stderr, 'broken\n');
    });

    test('a command that does not exist fails like in a shell: exit 127 and a message', async () => {
      const error = await sandbox.commands.run('no-such-command-brig-test').catch((caught: unknown) => caught);
      assert.ok(error instanceof CommandExitError, String(error));
      assert.equal(error.exitCode, 127);
      assert.match(error.stderr, /not found/);
    });

    test('a background command runs on, and wait() gives its result', async () => {
      const handle = await sandbox.commands.run('read -t 5 line < /dev/null; echo done', { background: true });
      assert.ok(handle.pid > 0);
      const result = await handle.wait();
      assert.equal(result.exitCode, 0);
      assert.equal(result.stdout, 'done\n');
    });

    test('onStdout and onStderr get every chunk, each stream in order', async () => {
      const stdout: string[] = [];
      const stderr: string[] = [];
      const result = await sandbox.commands.run('for i in $(seq 1 300); do echo out$i; echo err$i >&2; done', {
        onStdout: (chunk) => void stdout.push(chunk),
        onStderr: (chunk) => void stderr.push(chunk),
      });
      const expected = (prefix: string): string => Array.from({ length: 300 }, (_, index) => `${prefix}${index + 1}\n`).join('');
      assert.equal(stdout.join(''), expected('out'));
      assert.equal(stderr.join(''), expected('err'));
      assert.equal(result.stdout, expected('out'));
    });

    test('large output arrives whole and in order, in chunks of at most 64 KiB', async () => {
      const chunks: string[] = [];
      const result = await sandbox.commands.run('seq 1 300000', { onStdout: (chunk) => void chunks.push(chunk) });
      const expected = Array.from({ length: 300000 }, (_, index) => `${index + 1}\n`).join('');
      assert.equal(result.stdout.length, expected.length);
      assert.equal(result.stdout, expected);
      assert.ok(chunks.length > 1);
      assert.ok(chunks.every((chunk) => chunk.length <= 64 * 1024));
    });

    test('stdin: sendStdin reaches the program and closeStdin ends its input', async () => {
      const handle = await sandbox.commands.run('cat; echo "[eof]"', { background: true, stdin: true });
      await handle.sendStdin('hello\n');
      assert.ok(await eventually(() => handle.stdout.includes('hello')), handle.stdout);
      await handle.sendStdin('world\n');
      await handle.closeStdin();
      const result = await handle.wait();
      assert.equal(result.stdout, 'hello\nworld\n[eof]\n');
    });

    test('without stdin: true, stdin is closed from the start and sendStdin is refused', async () => {
      const result = await sandbox.commands.run('cat; echo "[eof]"');
      assert.equal(result.stdout, '[eof]\n');
      const handle = await sandbox.commands.run('sleep 30', { background: true });
      try {
        await assert.rejects(handle.sendStdin('x'), /stdin/);
      } finally {
        await handle.kill();
      }
    });

    test('kill() ends the command and its whole process group', async () => {
      const handle = await sandbox.commands.run('sleep 300 & echo $!; wait', { background: true });
      assert.ok(await eventually(() => /^\d+\n/.test(handle.stdout)), handle.stdout);
      const grandchild = Number(handle.stdout.trim());
      assert.equal(await handle.kill(), true);
      const error = await handle.wait().catch((caught: unknown) => caught);
      assert.ok(error instanceof CommandExitError, String(error));
      assert.equal(error.exitCode, -1);
      assert.equal(error.error, 'signal: killed');
      // Killed at once; gone once its new parent has reaped it.
      assert.ok(await until(async () => !(await aliveInSandbox(sandbox, grandchild))), `grandchild ${grandchild} is gone`);
      assert.equal(await sandbox.commands.kill(handle.pid), false, 'a process that is gone is not found');
    });

    test('list shows running commands with their command line, envs and cwd', async () => {
      const handle = await sandbox.commands.run('sleep 300', { background: true, envs: { BRIG_TEST: 'listed' } });
      try {
        const entry = (await sandbox.commands.list()).find((process) => process.pid === handle.pid);
        assert.ok(entry, 'the command is listed');
        assert.equal(entry.cmd, '/bin/bash');
        assert.deepEqual(entry.args, ['-l', '-c', 'sleep 300']);
        assert.deepEqual(entry.envs, { BRIG_TEST: 'listed' });
        assert.ok(entry.cwd);
      } finally {
        await handle.kill();
      }
      await assert.rejects(handle.wait(), CommandExitError);
      assert.ok(!(await pidsRunning(sandbox)).includes(handle.pid));
    });

    test('a command survives its client disconnecting, and connect() re-attaches by pid', async () => {
      const handle = await sandbox.commands.run('read line; echo "got $line"', { background: true, stdin: true });
      await handle.disconnect();
      assert.ok((await pidsRunning(sandbox)).includes(handle.pid), 'still running after the disconnect');
      let seen = '';
      const again: CommandHandle = await sandbox.commands.connect(handle.pid, { onStdout: (chunk) => void (seen += chunk) });
      await again.sendStdin('back\n');
      const result = await again.wait();
      assert.equal(result.stdout, 'got back\n');
      assert.equal(seen, 'got back\n');
    });

    test('several clients attached to one command get the same events', async () => {
      const handle = await sandbox.commands.run('read line; for i in 1 2 3; do echo "$line $i"; done', { background: true, stdin: true });
      const other = await sandbox.commands.connect(handle.pid);
      await handle.sendStdin('both\n');
      const [first, second] = await Promise.all([handle.wait(), other.wait()]);
      assert.equal(first.stdout, 'both 1\nboth 2\nboth 3\n');
      assert.equal(second.stdout, first.stdout);
    });

    test('timeoutMs is the command\'s lifetime: it is killed when it expires', async () => {
      const handle = await sandbox.commands.run('sleep 300', { background: true, timeoutMs: 500 });
      await assert.rejects(handle.wait());
      assert.ok(await until(async () => !(await pidsRunning(sandbox)).includes(handle.pid)), 'the command is gone');
    });

    test('cwd (absolute, relative to home) and envs apply; the default cwd is the home', async () => {
      const home = await sandbox.commands.run('pwd; echo "$HOME"');
      const [cwd, homeVariable] = home.stdout.trim().split('\n');
      assert.equal(cwd, homeVariable);
      await sandbox.commands.run('mkdir -p sub');
      const relative = await sandbox.commands.run('pwd; echo "$GREETING $OTHER"', { cwd: 'sub', envs: { GREETING: 'hello', OTHER: 'there' } });
      assert.equal(relative.stdout, `${homeVariable}/sub\nhello there\n`);
      const absolute = await sandbox.commands.run('pwd', { cwd: envd.workspace });
      assert.equal(absolute.stdout, `${envd.workspace}\n`);
    });

    test('a cwd that does not exist is an InvalidArgumentError naming it', async () => {
      const error = await sandbox.commands.run('pwd', { cwd: '/no/such/dir' }).catch((caught: unknown) => caught);
      assert.ok(error instanceof InvalidArgumentError, String(error));
      assert.match(error.message, /\/no\/such\/dir/);
    });
  });

  describe(`process.Process over plain Connect: hostile processes and bad input, envd ${where}`, { skip: envdSkip(mode) }, () => {
    let envd: TestEnvd;
    let sandbox: Sandbox;
    useEnvd(mode, (started) => ({ envd, sandbox } = started));

    test('events: start first, then data, then end with a Go-like status', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('echo hi; exit 4'));
      const messages = await stream.all();
      assert.ok(typeof eventOf(messages[0]).start?.pid === 'number');
      assert.equal(stream.stdout, 'hi\n');
      assert.deepEqual(eventOf(messages.at(-2)).end, { exitCode: 4, exited: true, status: 'exit status 4', error: 'exit status 4' });
      assert.deepEqual(messages.at(-1), { end: true, body: {} });
    });

    test('Connect-Timeout-Ms on Start kills the process when it expires: signal: killed', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('sleep 300'), { 'connect-timeout-ms': '300' });
      const messages = await stream.all();
      assert.deepEqual(eventOf(messages.at(-2)).end, { exitCode: -1, exited: false, status: 'signal: killed', error: 'signal: killed' });
    });

    test('a grandchild that keeps stdout open does not hold back the end', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('sleep 300 & echo $!; exit 0'));
      const messages = await stream.all();
      assert.deepEqual(eventOf(messages.at(-2)).end, { exitCode: 0, exited: true, status: 'exit status 0' });
      const grandchild = Number(stream.stdout.trim());
      assert.ok(grandchild > 0, stream.stdout);
      assert.equal(await aliveInSandbox(sandbox, grandchild), true, 'the grandchild itself was not killed');
      await sandbox.commands.run(`kill -9 ${grandchild}`);
    });

    test('a grandchild flooding stdout after the program exits does not hold back the end, and is cut off', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('cat /dev/zero & echo "$!" >&2; exit 0'));
      const messages = await stream.all();
      assert.deepEqual(eventOf(messages.at(-2)).end, { exitCode: 0, exited: true, status: 'exit status 0' });
      const grandchild = Number(stream.stderr.trim());
      assert.ok(grandchild > 0, stream.stderr);
      // envd closed its end of the pipe: the next write gets SIGPIPE.
      assert.ok(await until(async () => !(await aliveInSandbox(sandbox, grandchild))), `grandchild ${grandchild} is gone`);
    });

    test('a process that closes its own stdout and stderr still ends normally', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('echo before; exec >&- 2>&-; sleep 0.1; exit 5'));
      const messages = await stream.all();
      assert.equal(stream.stdout, 'before\n');
      assert.equal(eventOf(messages.at(-2)).end?.exitCode, 5);
    });

    test('a process ignoring SIGTERM is still ended by SIGKILL', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('trap "" TERM; echo ready; while :; do sleep 0.05; done'));
      const pid = eventOf((await stream.next()) ?? undefined).start?.pid as number;
      while (!stream.stdout.includes('ready')) assert.ok(await stream.next());
      assert.equal((await unary(envd, 'SendSignal', { process: { pid }, signal: 'SIGNAL_SIGTERM' })).status, 200);
      assert.ok((await pidsRunning(sandbox)).includes(pid), 'SIGTERM was ignored');
      assert.equal((await unary(envd, 'SendSignal', { process: { pid }, signal: 'SIGNAL_SIGKILL' })).status, 200);
      const messages = await stream.all();
      assert.equal(eventOf(messages.at(-2)).end?.status, 'signal: killed');
    });

    test('a program that cannot start answers invalid_argument, not a hang', async () => {
      const messages = await (await ProcessStream.open(envd, 'Start', { process: { cmd: '/no/such/program' } })).all();
      assert.equal(messages.length, 1);
      assert.equal(messages[0]?.end, true);
      assert.deepEqual((messages[0]?.body.error as Record<string, unknown>).code, 'invalid_argument');
      assert.match(String((messages[0]?.body.error as Record<string, unknown>).message), /\/no\/such\/program/);
    });

    if (mode === 'image') {
      test('a program only root may execute answers invalid_argument for the user, and runs for root', async () => {
        // envd is root here and starts the user's programs through brig-exec --as, which execs only after the spawn: envd must look first.
        await sandbox.commands.run('printf "#!/bin/sh\\necho ran\\n" > /usr/local/bin/only-root && chmod 700 /usr/local/bin/only-root', { user: 'root' });
        for (const cmd of ['/usr/local/bin/only-root', 'only-root']) {
          const messages = await (await ProcessStream.open(envd, 'Start', { process: { cmd } })).all();
          assert.equal(messages.length, 1, cmd);
          assert.equal((messages[0]?.body.error as Record<string, unknown>).code, 'invalid_argument', cmd);
        }
        assert.equal((await sandbox.commands.run('only-root', { user: 'root' })).stdout, 'ran\n');
      });
    }

    test('an unknown pid or tag answers not_found', async () => {
      for (const method of ['SendSignal', 'SendInput', 'CloseStdin', 'Update']) {
        const result = await unary(envd, method, { process: { pid: 999999 }, signal: 'SIGNAL_SIGKILL', input: { stdin: '' } });
        assert.equal(result.status, 404, method);
        assert.equal(result.body.code, 'not_found', method);
      }
      const connect = await (await ProcessStream.open(envd, 'Connect', { process: { tag: 'no-such-tag' } })).all();
      assert.equal((connect[0]?.body.error as Record<string, unknown>).code, 'not_found');
    });

    test('malformed messages answer invalid_argument naming the field', async () => {
      const notJson = await unary(envd, 'SendInput', '{"process": ');
      assert.equal(notJson.status, 400);
      assert.equal(notJson.body.code, 'invalid_argument');
      const badPid = await unary(envd, 'SendSignal', { process: { pid: 'abc' }, signal: 'SIGNAL_SIGKILL' });
      assert.equal(badPid.body.code, 'invalid_argument');
      assert.match(String(badPid.body.message), /process\.pid/);
      const badCmd = await (await ProcessStream.open(envd, 'Start', { process: { cmd: 42 } })).all();
      assert.equal((badCmd[0]?.body.error as Record<string, unknown>).code, 'invalid_argument');
      assert.match(String((badCmd[0]?.body.error as Record<string, unknown>).message), /process\.cmd/);
      const badArgs = await (await ProcessStream.open(envd, 'Start', { process: { cmd: '/bin/true', args: ['ok', 7] } })).all();
      assert.match(String((badArgs[0]?.body.error as Record<string, unknown>).message), /process\.args\[1\]/);
      const badSignal = await unary(envd, 'SendSignal', { process: { pid: 1 }, signal: 'SIGNAL_SIGHUP' });
      assert.match(String(badSignal.body.message), /signal/);
      assert.equal((await fetch(`${envd.url}/health`)).status, 204, 'envd is still serving');
    });

    test('StreamInput feeds stdin from a client stream; Update on a process without a terminal is refused', async () => {
      const stream = await ProcessStream.open(envd, 'Start', { ...startMessage('cat'), stdin: true });
      const pid = eventOf((await stream.next()) ?? undefined).start?.pid as number;
      const input = Buffer.concat([
        encodeEnvelope({ start: { process: { pid } } }),
        encodeEnvelope({ data: { input: { stdin: Buffer.from('streamed\n').toString('base64') } } }),
        encodeEnvelope({ keepalive: {} }),
        encodeEnvelope({}, ENVELOPE_FLAG.endStream),
      ]);
      const response = await fetch(`${envd.url}/process.Process/StreamInput`, { method: 'POST', headers: STREAM_HEADERS, body: new Uint8Array(input) });
      const answer = new EnvelopeReader(1 << 20).push(Buffer.from(await response.arrayBuffer()));
      assert.deepEqual(answer.map((envelope) => JSON.parse(envelope.data.toString()) as unknown), [{}, {}]);
      const update = await unary(envd, 'Update', { process: { pid }, pty: { size: { cols: 10, rows: 10 } } });
      assert.equal(update.body.code, 'failed_precondition');
      assert.equal((await unary(envd, 'CloseStdin', { process: { pid } })).status, 200);
      const messages = await stream.all();
      assert.equal(stream.stdout, 'streamed\n');
      assert.equal(eventOf(messages.at(-2)).end?.exitCode, 0);
    });

    test('tags select a process for Connect, List and SendSignal', async () => {
      const stream = await ProcessStream.open(envd, 'Start', { ...startMessage('sleep 300'), tag: 'brig-tagged' });
      const pid = eventOf((await stream.next()) ?? undefined).start?.pid;
      const listed = (await unary(envd, 'List', {})).body.processes as Array<Record<string, unknown>>;
      assert.equal(listed.find((process) => process.pid === pid)?.tag, 'brig-tagged');
      const attached = await ProcessStream.open(envd, 'Connect', { process: { tag: 'brig-tagged' } });
      assert.equal(eventOf((await attached.next()) ?? undefined).start?.pid, pid);
      assert.equal((await unary(envd, 'SendSignal', { process: { tag: 'brig-tagged' }, signal: 'SIGNAL_SIGKILL' })).status, 200);
      for (const messages of await Promise.all([stream.all(), attached.all()])) assert.equal(eventOf(messages.at(-2)).end?.status, 'signal: killed');
    });

    test('a process flooding output with no client attached is not held back', async () => {
      const stream = await ProcessStream.open(envd, 'Start', startMessage('head -c 1073741824 /dev/zero; exit 0'));
      const pid = eventOf((await stream.next()) ?? undefined).start?.pid as number;
      stream.close();
      assert.ok(await until(async () => !(await pidsRunning(sandbox)).includes(pid), 3000), 'the flood ran to its end with nobody reading');
    });

    test('a process flooding output to a slow reader does not grow envd\'s memory', { skip: (mode === 'gvisor' || mode === 'vm') && "envd's memory is the Sentry's or the guest's there: the host has no process of its own to read" }, async () => {
      const envdPid = envd.envdPid();
      const before = vmRssKiB(envdPid);
      const stream = await ProcessStream.open(envd, 'Start', startMessage('head -c 1073741824 /dev/zero'));
      const pid = eventOf((await stream.next()) ?? undefined).start?.pid as number;
      let peak = before;
      try {
        // Read 400 messages, pausing now and then: the process is made to wait, not buffered for.
        for (let read = 0; read < 400; read++) {
          assert.ok(await stream.next());
          if (read % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
          peak = Math.max(peak, vmRssKiB(envdPid));
        }
        assert.ok(stream.bytes < 256 * 1024 * 1024, `read ${stream.bytes} bytes`);
        assert.ok((await pidsRunning(sandbox)).includes(pid), 'the flood is held back while the reader is slow');
        assert.ok(peak - before < 64 * 1024, `envd's RSS grew by ${peak - before} KiB`);
      } finally {
        stream.close();
        await unary(envd, 'SendSignal', { process: { pid }, signal: 'SIGNAL_SIGKILL' });
      }
    });
  });
}
