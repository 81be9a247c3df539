import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn as spawnPty } from 'node-pty';
import { BRIG, eventually, runBrig, tempWorkspace } from '../helpers/brig.ts';
import { REPO } from '../helpers/envd.ts';
import { startStandInModel, type StandInModel } from '../helpers/stand-in-model.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';

/**
 * A real agent CLI — Claude Code from the npm registry (a pinned devDependency
 * whose cli.js runs on Node 20) — driven non-interactively by `brig agent`
 * against a stand-in model that answers with a tool call writing a file.
 * Only the model is a stand-in: the CLI, the jail, the relay, the proxy and
 * the gateway are the real ones.
 */

const SECRET = 'sk-ant-agent-test-secret-9f8e7d';
const PLACEHOLDER = 'brig-placeholder-key-the-gateway-sends-the-real-one';

/** Every file under dir, for looking for a leaked key. */
function filesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stats = statSync(path);
    if (stats.isDirectory()) found.push(...filesUnder(path));
    else if (stats.isFile()) found.push(path);
  }
  return found;
}

describe('brig agent claude -p, against a stand-in model', () => {
  const state = tempWorkspace('brig-agent-state-');
  let model: StandInModel;
  const agent = (workspace: string, args: string[]) =>
    runBrig(['agent', 'claude', ...args], {
      cwd: workspace,
      env: {
        ...process.env,
        // Where `brig agent` finds the CLI: the repo's own install, as a project or global npm install would be.
        PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`,
        BRIG_STATE_DIR: state.dir,
        ANTHROPIC_API_KEY: SECRET,
        BRIG_ANTHROPIC_URL: model.url,
      },
    });

  before(async () => {
    model = await startStandInModel({ writeFile: { path: 'hello.txt', content: 'written by a jailed agent\n' }, finalText: 'Created hello.txt.' });
  });

  after(async () => {
    await model.close();
    state.remove();
  });

  test('the file lands in the workspace; the model got the real key; the jail only the placeholder', async () => {
    const workspace = tempWorkspace('brig-agent-ws-');
    try {
      const result = await agent(workspace.dir, ['-p', `Create hello.txt in ${workspace.dir}`]);
      assert.equal(result.code, 0, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
      assert.equal(readFileSync(join(workspace.dir, 'hello.txt'), 'utf8'), 'written by a jailed agent\n');
      assert.match(result.stdout, /Created hello\.txt\./);

      const calls = model.modelRequests();
      assert.ok(calls.length >= 2, 'a tool call, then the answer after its result');
      for (const call of calls) assert.equal(call.headers['x-api-key'], SECRET);
      assert.ok(!model.requests.some((request) => JSON.stringify(request.headers).includes(PLACEHOLDER)), 'the placeholder never reaches the provider');
      assert.equal(model.tool()?.name, 'Write');
      assert.match(result.stderr, /brig: LLM gateway: \d+ requests?, \d+ input and \d+ output tokens; transcript /);

      // What the jail held: the placeholder in its environment, and no key in the agent's kept home or the transcripts.
      const plan = await agent(workspace.dir, ['--dry-run', '--json', '-p', 'x']);
      const environment = JSON.parse(plan.stdout).environment as Record<string, string>;
      assert.equal(environment.ANTHROPIC_API_KEY, PLACEHOLDER);
      assert.match(environment.ANTHROPIC_BASE_URL ?? '', /^http:\/\/127\.0\.0\.1:3128\/anthropic$/);
      assert.ok(!plan.stdout.includes(SECRET));
      const kept = [...filesUnder(join(state.dir, 'agents')), ...filesUnder(join(state.dir, 'transcripts'))];
      assert.ok(kept.some((file) => file.endsWith('.claude.json')), 'the agent kept its state in its private home');
      for (const file of kept) assert.ok(!readFileSync(file, 'utf8').includes(SECRET), `${file} holds the key`);
    } finally {
      workspace.remove();
    }
  });

  // The same agent and gateway on the stronger tiers; on the VM, the guest reaches the gateway over the channel (brig.egress).
  for (const tier of ['gvisor', 'vm']) {
    const skip = TEST_TIERS.find((entry) => entry.tier === tier)?.skip ?? `no ${tier} tier`;
    test(`on the ${tier} tier too: brig agent claude --tier ${tier} writes the file through the same gateway`, { skip }, async () => {
      const workspace = tempWorkspace('brig-agent-ws-');
      try {
        const before = model.modelRequests().length;
        const result = await agent(workspace.dir, ['--tier', tier, '-p', `Create hello.txt in ${workspace.dir}`]);
        assert.equal(result.code, 0, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
        assert.equal(readFileSync(join(workspace.dir, 'hello.txt'), 'utf8'), 'written by a jailed agent\n');
        assert.match(result.stdout, /Created hello\.txt\./);
        const calls = model.modelRequests().slice(before);
        assert.ok(calls.length >= 2, 'a tool call, then the answer after its result');
        for (const call of calls) assert.equal(call.headers['x-api-key'], SECRET);
        const plan = await agent(workspace.dir, ['--tier', tier, '--dry-run', '--json', '-p', 'x']);
        const planned = JSON.parse(plan.stdout) as { tier: string; environment: Record<string, string> };
        assert.equal(planned.tier, tier);
        assert.equal(planned.environment.ANTHROPIC_API_KEY, PLACEHOLDER);
      } finally {
        workspace.remove();
      }
    });
  }

  test('interactively: the full-screen TUI in a terminal of its own, a prompt typed, its question answered, the file written', async () => {
    const workspace = tempWorkspace('brig-agent-tui-');
    const tui = await startStandInModel({ writeFile: { path: 'from-tui.txt', content: 'typed into the TUI\n' }, finalText: 'Finished in the TUI.' });
    const terminal = spawnPty(BRIG, ['agent', 'claude'], {
      cols: 120,
      rows: 40,
      cwd: workspace.dir,
      env: { ...process.env, TERM: 'xterm-256color', PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`, BRIG_STATE_DIR: state.dir, ANTHROPIC_API_KEY: SECRET, BRIG_ANTHROPIC_URL: tui.url } as Record<string, string>,
    });
    let screen = '';
    terminal.onData((data) => (screen += data));
    const exited = new Promise<number>((resolve) => terminal.onExit(({ exitCode }) => resolve(exitCode)));
    // The TUI redraws with cursor moves, not spaces: compare what is left once escapes and blanks are gone.
    // eslint-disable-next-line no-control-regex -- escapes are exactly what is being stripped
    const shows = (text: string) => () => screen.replace(/\x1b\[[0-9;?>]*[a-zA-Z]|\x1b\][^\x07]*\x07|\s/g, '').includes(text.replace(/\s/g, ''));
    try {
      // No onboarding, no trust dialog, no "use this API key?": the seeded home answered them.
      assert.ok(await eventually(shows('? for shortcuts'), 1500), screen);
      terminal.write(`Create from-tui.txt in ${workspace.dir}`);
      assert.ok(await eventually(shows('from-tui.txt in'), 500), screen);
      terminal.write('\r');
      // Interactive runs keep Claude Code's own permission prompt: the user answers it.
      // It comes after a model round trip through the gateway: on a loaded machine (CI's clean clone) that once took over 30 s.
      assert.ok(await eventually(shows('Do you want to create from-tui.txt?'), 6000), screen);
      terminal.write('\r');
      assert.ok(await eventually(() => existsSync(join(workspace.dir, 'from-tui.txt')), 1500), screen);
      assert.equal(readFileSync(join(workspace.dir, 'from-tui.txt'), 'utf8'), 'typed into the TUI\n');
      assert.ok(await eventually(shows('Finished in the TUI.'), 6000), screen);
      terminal.write('\x03');
      await eventually(() => false, 10);
      terminal.write('\x03');
      assert.equal(await exited, 0);
      for (const call of tui.modelRequests()) assert.equal(call.headers['x-api-key'], SECRET);
    } finally {
      terminal.kill('SIGKILL');
      await tui.close();
      workspace.remove();
    }
  });

  test('a write outside the workspace is refused: nothing reaches the host', async () => {
    const outside = mkdtempSync(join(REPO, '.scratch-outside-'));
    const escape = await startStandInModel({ writeFile: { path: join(outside, 'escaped.txt'), content: 'should not be here\n' } });
    const workspace = tempWorkspace('brig-agent-ws-');
    try {
      const result = await runBrig(['agent', 'claude', '-p', 'Write the file'], {
        cwd: workspace.dir,
        env: { ...process.env, PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`, BRIG_STATE_DIR: state.dir, ANTHROPIC_API_KEY: SECRET, BRIG_ANTHROPIC_URL: escape.url },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(escape.tool()?.name, 'Write', 'the model did ask for the write');
      assert.ok(!existsSync(join(outside, 'escaped.txt')), 'the file did not reach the host');
      // The repo is not in the jail's view at all, so Claude Code saw the write fail and reported it back.
      const last = escape.modelRequests().at(-1);
      assert.match(JSON.stringify(last?.body), /tool_result/);
    } finally {
      await escape.close();
      workspace.remove();
      rmSync(outside, { recursive: true, force: true });
    }
  });
});
