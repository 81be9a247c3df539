import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as pty from 'node-pty';
import { BRIG, eventually, tempWorkspace } from '../helpers/brig.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';

/** brig under a real terminal, as a person runs it: node-pty plays the terminal emulator. */
function inTerminal(tier: string, command: string, cwd: string): { term: pty.IPty; output: () => string; exit: Promise<number> } {
  const term = pty.spawn(BRIG, ['run', '--tier', tier, '--', '/bin/sh', '-c', command], { name: 'xterm-256color', cols: 100, rows: 30, cwd, env: process.env });
  let output = '';
  term.onData((data) => (output += data));
  const exit = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
  return { term, output: () => output, exit };
}

// The jail hands the command the CLI's own pty; the VM makes one in the guest and relays it over its ports.
for (const tier of ['jail', 'vm']) {
const skip = TEST_TIERS.find((entry) => entry.tier === tier)?.skip ?? `no ${tier} tier`;
// A VM boots first (seconds on TCG): its waits allow for that.
const attempts = tier === 'vm' ? 6000 : 500;
describe(`brig run --tier ${tier} with a terminal`, { skip }, () => {
  let workspace: { dir: string; remove: () => void };
  before(() => {
    workspace = tempWorkspace();
  });
  after(() => workspace.remove());

  test('the command gets a terminal of its own, of the caller\'s size, as its controlling tty', async () => {
    // bwrap's fresh /dev names the terminal /dev/console; field 7 of /proc/PID/stat is the controlling tty (0: none).
    const session = inTerminal(tier, 'tty; stty size; test -t 0 && echo stdin-is-tty; test "$(cut -d" " -f7 /proc/$$/stat)" != 0 && echo has-ctty; exit 4', workspace.dir);
    assert.equal(await session.exit, 4, session.output());
    assert.match(session.output(), /^\/dev\/(console|pts\/\d+)\r?$/m);
    assert.match(session.output(), /30 100/);
    assert.match(session.output(), /stdin-is-tty/);
    assert.match(session.output(), /has-ctty/);
  });

  test('a resize reaches the program inside', async () => {
    const session = inTerminal(tier, 'trap \'stty size; exit 0\' WINCH; echo ready; while :; do sleep 0.05; done', workspace.dir);
    assert.ok(await eventually(() => session.output().includes('ready'), attempts), session.output());
    session.term.resize(120, 40);
    assert.equal(await session.exit, 0, session.output());
    assert.match(session.output(), /40 120/);
  });

  test('Ctrl-C goes to the program, as in a terminal', async () => {
    const session = inTerminal(tier, 'trap \'echo got-interrupt; exit 3\' INT; echo ready; while :; do sleep 0.05; done', workspace.dir);
    assert.ok(await eventually(() => session.output().includes('ready'), attempts), session.output());
    session.term.write('\x03');
    assert.equal(await session.exit, 3, session.output());
    assert.match(session.output(), /got-interrupt/);
  });

  test('keystrokes reach the program', async () => {
    const session = inTerminal(tier, 'read line; echo "you said [$line]"', workspace.dir);
    assert.ok(await eventually(() => session.output().length >= 0));
    session.term.write('hello\r');
    assert.equal(await session.exit, 0, session.output());
    assert.match(session.output(), /you said \[hello\]/);
  });
});
}
