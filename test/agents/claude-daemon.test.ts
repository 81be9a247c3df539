import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, type SandboxOpts } from 'e2b';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { REPO } from '../helpers/envd.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { startStandInModel, type StandInModel } from '../helpers/stand-in-model.ts';

/**
 * Issue 10, item 14: in a daemon sandbox made from the claude profile, the
 * documented `claude -p …` (no flags: the SDK's programs start it as they
 * like) exited 0 and wrote nothing, because the permission mode `brig agent
 * -p` adds was missing there. The profile's unattended settings give it the
 * same no-questions mode: the real Claude Code CLI, a real daemon and jail,
 * the e2b SDK, and a stand-in model answering with a tool call that writes.
 */

const SECRET = 'sk-ant-daemon-claude-secret';

describe('claude -p in a daemon sandbox from the claude profile', () => {
  const state = tempWorkspace('brig-claude-daemon-');
  let model: StandInModel;
  let daemon: RunningDaemon;
  let opts: SandboxOpts;

  before(async () => {
    chmodSync(state.dir, 0o755);
    model = await startStandInModel({ writeFile: { path: '/home/user/from-daemon.txt', content: 'written in a daemon sandbox\n' }, finalText: 'Created from-daemon.txt.' });
    daemon = await serveDaemon(join(state.dir, 'state'), {
      apiKey: 'k',
      env: { PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`, ANTHROPIC_API_KEY: SECRET, BRIG_ANTHROPIC_URL: model.url },
    });
    opts = { apiKey: 'k', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
  });
  after(async () => {
    for (const info of await Sandbox.list(opts).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts).catch(() => false);
    await daemon.stop();
    await model.close();
    state.remove();
  });

  test('writes the file, as brig agent claude -p does', async () => {
    const sandbox = await Sandbox.create('claude', opts);
    const result = await sandbox.commands.run('claude -p "Create from-daemon.txt in /home/user"', { timeoutMs: 0 });
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /Created from-daemon\.txt\./);
    assert.equal(await sandbox.files.read('/home/user/from-daemon.txt'), 'written in a daemon sandbox\n');
    assert.equal(model.tool()?.name, 'Write');
    for (const call of model.modelRequests()) assert.equal(call.headers['x-api-key'], SECRET);
    await sandbox.kill();
    // Issue 14: brig logs shows the session — the command, its model exchanges (the tool call, its result), its output, its end — in order.
    const logs = await runBrig(['logs', sandbox.sandboxId], { env: { BRIG_URL: daemon.url, BRIG_API_KEY: 'k' } });
    assert.equal(logs.code, 0, logs.stderr);
    const order = [
      /\$ \/bin\/bash -l -c claude -p "Create from-daemon\.txt in \/home\/user"/,
      /model anthropic \S+: POST \/v1\/messages\S* → 200[^\n]*\n {2}asked: +Create from-daemon\.txt in \/home\/user[\s\S]*?answered: +\[tool Write\] \{[^\n]*from-daemon\.txt/,
      /asked: +\[tool result\][\s\S]*?answered: +Created from-daemon\.txt\./,
      /\nCreated from-daemon\.txt\.\n/,
      /exit status 0 · pid \d+/,
      /killed\n$/,
    ];
    let at = 0;
    for (const pattern of order) {
      const found = pattern.exec(logs.stdout.slice(at));
      assert.ok(found, `${pattern} after position ${at} of:\n${logs.stdout}`);
      at += found.index + found[0].length;
    }
    assert.doesNotMatch(logs.stdout, new RegExp(SECRET), 'the key never reaches the transcript');
  });
});
