import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as pty from 'node-pty';
import { Sandbox, type SandboxOpts } from 'e2b';
import { BRIG, runBrig, startBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { Conversation, freePort } from '../helpers/ports.ts';

/**
 * brig attach against a real daemon: viewers of a sandbox's monitor shell
 * (several at once, read-only or typing, on a pipe or a terminal), and how
 * it picks a terminal when there is no monitor shell.
 */

const API_KEY = 'attach-key';

/** A running `brig attach`: its output so far, and waits on what it prints. */
class Viewer {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => this.take(() => (this.stdout += chunk.toString())));
    child.stderr?.on('data', (chunk: Buffer) => this.take(() => (this.stderr += chunk.toString())));
    this.exited = new Promise((resolve) => child.once('close', (code) => this.take(() => resolve(code))));
  }

  async until(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<void> {
    let done = false;
    void this.exited.then(() => (done = true));
    while (!pattern.test(this[stream])) {
      if (done) throw new Error(`brig attach ended before ${pattern} on its ${stream}: ${JSON.stringify({ stdout: this.stdout.slice(-1000), stderr: this.stderr })}`);
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
  }

  private take(update: () => void): void {
    update();
    for (const waiter of this.waiters) waiter();
    this.waiters.clear();
  }
}

describe('brig attach', () => {
  const state = tempWorkspace('brig-attach-');
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const brig = (args: string[]) => runBrig(args, { env });
  const attach = (args: string[]): Viewer => new Viewer(startBrig(['attach', ...args], { env }));
  /** A named sandbox publishing the ports asked for, on free ports. */
  const create = async (name: string, kinds: Array<'agent' | 'monitor'>): Promise<Record<'agent' | 'monitor', number>> => {
    for (;;) {
      const ports = { agent: await freePort(), monitor: await freePort() };
      const result = await brig(['create', '--name', name, ...kinds.flatMap((kind) => [`--${kind}-port`, String(ports[kind])])]);
      if (result.code === 0) return ports;
      if (!result.stderr.includes('BRIG_PORT_IN_USE')) throw new Error(result.stderr);
    }
  };
  const monitorShell = async (name: string) => {
    const id = JSON.parse((await brig(['ls', '--json'])).stdout).find((entry: { name: string }) => entry.name === name).id as string;
    const sandbox = await Sandbox.connect(id, opts());
    for (;;) {
      const shell = (await sandbox.commands.list()).find((process) => process.tag === 'brig-monitor');
      if (shell) return { sandbox, shell };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
    env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
  });
  after(async () => {
    const ids = (await brig(['ls', '--all', '--quiet'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await brig(['rm', '--data', ...ids]);
    await daemon.stop();
    state.remove();
  });

  test('two watchers at once both show what a line sent to the monitor port ran', async () => {
    const ports = await create('watched', ['monitor']);
    const { shell } = await monitorShell('watched');
    const viewers = [attach(['watched', '--watch']), attach(['--watch', 'watched'])];
    for (const viewer of viewers) await viewer.until('stderr', new RegExp(`^brig: attached to the monitor shell \\(pid ${shell.pid}\\) in watched, read-only; Ctrl-\\\\ detaches$`, 'm'));
    (await Conversation.open(ports.monitor)).socket.end('echo watched-$((6*7))\n');
    // The echo of the typed line shows $((6*7)); only the shell running it prints 42.
    for (const viewer of viewers) await viewer.until('stdout', /watched-42/);
    for (const viewer of viewers) viewer.child.kill('SIGINT');
    for (const viewer of viewers) {
      assert.equal(await viewer.exited, 0);
      assert.match(viewer.stderr, /detached; it runs on/);
    }
  });

  test('typing on a pipe reaches the shell; Ctrl-\\ detaches, and the shell runs on', async () => {
    await create('typed', ['monitor']);
    const { sandbox, shell } = await monitorShell('typed');
    const viewer = attach(['typed']);
    await viewer.until('stderr', /attached to the monitor shell/);
    assert.doesNotMatch(viewer.stderr, /read-only/);
    viewer.child.stdin?.write('echo typed-$((2*3))\n');
    await viewer.until('stdout', /typed-6/);
    viewer.child.stdin?.write('echo never-$((1))\x1c');
    assert.equal(await viewer.exited, 0);
    assert.ok((await sandbox.commands.list()).some((process) => process.pid === shell.pid), 'the monitor shell runs on');
  });

  test('on a terminal: raw keys, its window size at once and on a resize', async () => {
    await create('sized', ['monitor']);
    await monitorShell('sized');
    const term = pty.spawn(BRIG, ['attach', 'sized'], { name: 'xterm-256color', cols: 101, rows: 33, env: env as Record<string, string> });
    let output = '';
    let exit: number | null = null;
    const waiters = new Set<() => void>();
    const wake = (): void => {
      for (const waiter of waiters) waiter();
      waiters.clear();
    };
    term.onData((data) => {
      output += data;
      wake();
    });
    const exited = new Promise<number>((resolve) => term.onExit(({ exitCode }) => { exit = exitCode; wake(); resolve(exitCode); }));
    const until = async (pattern: RegExp): Promise<void> => {
      while (!pattern.test(output)) {
        if (exit !== null) throw new Error(`ended before ${pattern}: ${JSON.stringify(output)}`);
        await new Promise<void>((resolve) => waiters.add(resolve));
      }
    };
    await until(/attached to the monitor shell/);
    term.write('echo "size=$(stty size)"\r');
    await until(/size=33 101/);
    term.resize(120, 40);
    // The resize reaches the shell by a separate call: asked until it has.
    for (let attempt = 0; !/size=40 120/.test(output); attempt++) {
      term.write(`echo "size=$(stty size) ${attempt}"\r`);
      await until(new RegExp(`size=\\d+ \\d+ ${attempt}`));
    }
    term.write('\x1c');
    assert.equal(await exited, 0);
  });

  test('without a monitor shell: the only terminal, else an error naming them; --pid picks one, not a command on pipes', async () => {
    const ports = await create('plain', ['agent']);
    const none = await brig(['attach', 'plain']);
    assert.equal(none.code, 125);
    assert.match(none.stderr, /no monitor shell and no terminal running \[BRIG_USAGE\]/);

    // An agent-port connection's shell is a terminal of the sandbox.
    const first = await Conversation.open(ports.agent);
    await first.first();
    const viewer = attach(['plain', '--watch']);
    await viewer.until('stderr', /attached to pid \d+ \(\/bin\/bash -c stty -echo/);
    first.send('echo "via-agent-$((1+1))"\n');
    await viewer.until('stdout', /via-agent-2/);
    viewer.child.stdin?.write('\x03');
    assert.equal(await viewer.exited, 0);

    const second = await Conversation.open(ports.agent);
    await second.first();
    const two = await brig(['attach', 'plain']);
    assert.equal(two.code, 125);
    assert.match(two.stderr, /no monitor shell and 2 terminals: pid \d+ .*; pid \d+ /);
    const pid = /pid (\d+)/.exec(two.stderr)?.[1] ?? '';
    const chosen = attach(['--pid', pid, '--watch', 'plain']);
    await chosen.until('stderr', new RegExp(`attached to pid ${pid} `));
    chosen.child.kill('SIGTERM');
    assert.equal(await chosen.exited, 0);

    const id = JSON.parse((await brig(['ls', '--json'])).stdout).find((entry: { name: string }) => entry.name === 'plain').id as string;
    const piped = await (await Sandbox.connect(id, opts())).commands.run('sleep 300', { background: true });
    const onPipes = await brig(['attach', '--pid', String(piped.pid), 'plain']);
    assert.equal(onPipes.code, 125);
    assert.match(onPipes.stderr, /runs on pipes, not a terminal/);
    const missing = await brig(['attach', '--pid', '999999', 'plain']);
    assert.match(missing.stderr, /no process 999999 runs in plain \[BRIG_USAGE\]/);
    const bad = await brig(['attach', '--pid', 'nine', 'plain']);
    assert.match(bad.stderr, /--pid nine: expected a process id \[BRIG_USAGE\]/);
    await piped.kill();
    first.socket.destroy();
    second.socket.destroy();
  });
});
