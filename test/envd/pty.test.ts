import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandExitError, type CommandHandle, type Sandbox } from 'e2b';
import { eventually } from '../helpers/brig.ts';
import { ENVD_MODES, envdSkip, envdWhere, useEnvd, type TestEnvd } from '../helpers/envd.ts';

/** Terminals through the real e2b SDK's `pty`: a real pseudo-terminal inside the sandbox. */

const encoder = new TextEncoder();

interface Terminal {
  handle: CommandHandle;
  output: () => string;
  type: (text: string) => Promise<void>;
}

async function openTerminal(sandbox: Sandbox, size = { cols: 80, rows: 24 }): Promise<Terminal> {
  const decoder = new TextDecoder();
  let output = '';
  const handle = await sandbox.pty.create({ ...size, onData: (data) => void (output += decoder.decode(data, { stream: true })), timeoutMs: 0 });
  return { handle, output: () => output, type: (text) => sandbox.pty.sendInput(handle.pid, encoder.encode(text)) };
}

for (const mode of ENVD_MODES) {
  describe(`pty through the e2b SDK, envd ${envdWhere(mode)}`, { skip: envdSkip(mode) }, () => {
    let sandbox: Sandbox;
    let envd: TestEnvd;
    useEnvd(mode, (started) => ({ sandbox, envd } = started));

    test('create gives a terminal of the asked size, with the SDK\'s TERM, and keystrokes reach the shell', async () => {
      const terminal = await openTerminal(sandbox, { cols: 91, rows: 27 });
      try {
        // Markers are built by the shell, so the echo of what was typed does not match them.
        await terminal.type('test -t 0 && echo "tty-$((6*7))"; echo "term=[$TERM]"; stty size\n');
        assert.ok(await eventually(() => /27 91/.test(terminal.output())), terminal.output());
        assert.match(terminal.output(), /tty-42/);
        assert.match(terminal.output(), /term=\[xterm-256color\]/);
        await terminal.type('exit 0\n');
        const result = await terminal.handle.wait();
        assert.equal(result.exitCode, 0);
      } finally {
        await sandbox.pty.kill(terminal.handle.pid);
      }
    });

    test('resize reaches the program inside (stty size, SIGWINCH)', async () => {
      const terminal = await openTerminal(sandbox);
      try {
        await terminal.type('trap \'echo "resized to $(stty size)"\' WINCH; echo "re""ady"\n');
        assert.ok(await eventually(() => terminal.output().includes('ready')), terminal.output());
        await sandbox.pty.resize(terminal.handle.pid, { cols: 132, rows: 43 });
        await terminal.type('stty size\n');
        assert.ok(await eventually(() => /43 132/.test(terminal.output())), terminal.output());
      } finally {
        await sandbox.pty.kill(terminal.handle.pid);
      }
    });

    test('kill ends the terminal: the handle ends with signal: killed, and it is no longer listed', async () => {
      const terminal = await openTerminal(sandbox);
      assert.ok((await sandbox.commands.list()).some((process) => process.pid === terminal.handle.pid));
      // List marks terminals (brig's field, which the SDK's list above read past); a command on pipes is not marked.
      const piped = await sandbox.commands.run('sleep 300', { background: true });
      const response = await fetch(`${envd.url}/process.Process/List`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      const { processes } = (await response.json()) as { processes: Array<{ pid: number; pty?: boolean }> };
      assert.equal(processes.find((process) => process.pid === terminal.handle.pid)?.pty, true);
      assert.equal(processes.find((process) => process.pid === piped.pid)?.pty, undefined);
      await piped.kill();
      assert.equal(await sandbox.pty.kill(terminal.handle.pid), true);
      const error = await terminal.handle.wait().catch((caught: unknown) => caught);
      assert.ok(error instanceof CommandExitError, String(error));
      assert.equal(error.exitCode, -1);
      assert.equal(error.error, 'signal: killed');
      assert.ok(!(await sandbox.commands.list()).some((process) => process.pid === terminal.handle.pid));
      assert.equal(await sandbox.pty.kill(terminal.handle.pid), false);
    });

    test('Ctrl-C goes to the program running in the terminal', { skip: mode === 'gvisor' && "Debian's runsc delivers no SIGINT for a terminal's ^C (a known limit: docs/tiers.md)" }, async () => {
      const terminal = await openTerminal(sandbox);
      try {
        // What the program prints is built at run time, so the terminal's echo of the typed line does not match it.
        await terminal.type(`bash -c 'trap "echo got-\\$((3*3)); exit 0" INT; echo re""ady; while :; do sleep 0.05; done'\n`);
        assert.ok(await eventually(() => terminal.output().includes('ready')), terminal.output());
        await terminal.type('\x03');
        assert.ok(await eventually(() => terminal.output().includes('got-9')), terminal.output());
      } finally {
        await sandbox.pty.kill(terminal.handle.pid);
      }
    });

    test('a terminal survives its client disconnecting, and connect re-attaches', async () => {
      const terminal = await openTerminal(sandbox);
      try {
        await terminal.handle.disconnect();
        const decoder = new TextDecoder();
        let output = '';
        const again = await sandbox.pty.connect(terminal.handle.pid, { onData: (data) => void (output += decoder.decode(data, { stream: true })) });
        await terminal.type('echo "back-$((2+3))"\n');
        assert.ok(await eventually(() => output.includes('back-5')), output);
        await terminal.type('exit 0\n');
        assert.equal((await again.wait()).exitCode, 0);
      } finally {
        await sandbox.pty.kill(terminal.handle.pid);
      }
    });

    test('stdin-only calls on a terminal are refused with a clear message', async () => {
      const terminal = await openTerminal(sandbox);
      try {
        await assert.rejects(sandbox.commands.sendStdin(terminal.handle.pid, 'x'), /terminal/);
        await assert.rejects(sandbox.commands.closeStdin(terminal.handle.pid), /terminal/);
      } finally {
        await sandbox.pty.kill(terminal.handle.pid);
      }
    });
  });
}
