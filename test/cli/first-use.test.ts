import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { REPO } from '../helpers/envd.ts';

/**
 * Issue 10, item 14: what a new user met in the first minutes. Each is a
 * clear error with a code and a hint, or simply works.
 */

describe('first use', () => {
  test('brig envd --listen on a busy port is an address-in-use BRIG_USAGE, not "a bug in brig"', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const address = taken.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const result = await runBrig(['envd', '--listen', `127.0.0.1:${port}`]);
      assert.equal(result.code, 125, result.stderr);
      assert.match(result.stderr, new RegExp(`brig: brig envd cannot listen: address already in use 127\\.0\\.0\\.1:${port} \\[BRIG_USAGE\\]\\n {2}hint: pick another --listen address`));
      assert.doesNotMatch(result.stderr, /internal error|this is a bug|\n\s+at /);
    } finally {
      taken.close();
    }
  });

  test('brig envd --listen with an address of the wrong form is BRIG_USAGE', async () => {
    const result = await runBrig(['envd', '--listen', 'nowhere']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /cannot listen on 'nowhere': give host:port or a unix socket path \[BRIG_USAGE\]/);
  });

  test('brig agent -p PROMPT claude means brig agent claude -p PROMPT', async () => {
    const workspace = tempWorkspace('brig-first-use-');
    const state = tempWorkspace('brig-first-use-state-');
    try {
      const env = { ...process.env, PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`, BRIG_STATE_DIR: state.dir };
      const plan = async (args: string[]) => {
        const result = await runBrig(['agent', ...args], { cwd: workspace.dir, env });
        assert.equal(result.code, 0, result.stderr);
        return (JSON.parse(result.stdout) as { command: string[]; policy: string }).command.slice(1);
      };
      const before = await plan(['-p', 'fix it', '--memory', '1g', 'claude', '--dry-run', '--json']);
      const after = await plan(['claude', '-p', 'fix it', '--memory', '1g', '--dry-run', '--json']);
      assert.deepEqual(before, ['-p', 'fix it', '--dangerously-skip-permissions']);
      assert.deepEqual(before, after);
      const nameless = await runBrig(['agent', '-p', 'fix it', '--', 'claude'], { cwd: workspace.dir, env });
      assert.equal(nameless.code, 125);
      assert.match(nameless.stderr, /brig agent needs the agent's name \[BRIG_USAGE\]/);
    } finally {
      workspace.remove();
      state.remove();
    }
  });

  test('an unknown agent\'s hint lists the aliases too', async () => {
    const result = await runBrig(['agent', 'claud']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /no agent named 'claud' \[BRIG_AGENT_UNKNOWN\]\n {2}hint: known: claude-code \(claude\), opencode, gemini-cli \(gemini\), codex, crush;/);
  });
});
