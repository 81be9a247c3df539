import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';

/**
 * brig agent at the memory limit (issue 10, item 8): a test run the agent
 * starts blows the limit, and the agent must live on, its conversation
 * intact. The stand-in agent holds more memory than its child will get, so
 * the largest process at the limit is the agent itself: without protection
 * it is the one killed (brig run, which does not protect its command, shows
 * exactly that).
 */

const AGENT = `#!/usr/bin/perl
# A stand-in agent: holds more memory than its child will get, then runs a hog, then reports.
my $held = "m" x (48 * 1024 * 1024);
my $status = system('perl', '-e', '$x = ""; $x .= "a" x 1048576 while 1');
print "agent lived; child status $status\\n";
`;

const GREEDY_AGENT = `#!/usr/bin/perl
# A stand-in agent that is itself the hog: nothing else could be killed to free memory.
my $x = ""; $x .= "a" x 1048576 while 1;
`;

describe('brig agent at the memory limit', () => {
  const scratch = tempWorkspace('brig-agent-memory-');
  const project = join(scratch.dir, 'project');
  const agents = join(scratch.dir, 'agents.yaml');
  const env = { ...process.env, BRIG_STATE_DIR: join(scratch.dir, 'state'), BRIG_AGENTS_FILE: agents };

  before(() => {
    mkdirSync(project);
    for (const [name, script] of [['agent.pl', AGENT], ['greedy.pl', GREEDY_AGENT]] as const) {
      writeFileSync(join(project, name), script);
      chmodSync(join(project, name), 0o755);
    }
    writeFileSync(
      agents,
      [
        'fake-agent:',
        `  command: ${join(project, 'agent.pl')}`,
        '  providers: []',
        // allowlist mode: the egress relay runs beside the agent, brig's and spared too.
        'fake-agent-allowlist:',
        `  command: ${join(project, 'agent.pl')}`,
        '  providers: []',
        '  allow: [127.0.0.1:9]',
        'greedy-agent:',
        `  command: ${join(project, 'greedy.pl')}`,
        '  providers: []',
        '',
      ].join('\n'),
    );
  });
  after(() => scratch.remove());

  for (const name of ['fake-agent', 'fake-agent-allowlist']) {
    test(`${name}: the agent's child is killed, the agent lives on and the summary says so`, async () => {
      const result = await runBrig(['agent', name, '--memory', '128m', '-p', 'go'], { cwd: project, env });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^agent lived; child status 9$/m);
      assert.match(result.stderr, /killed perl \(pid \d+ inside, [\d.]+ MiB resident\), the largest process at the limit; the rest went on/);
      assert.doesNotMatch(result.stderr, /agent\.pl/);
    });
  }

  test('the same program under brig run, which spares only brig\'s own processes, is itself the one killed', async () => {
    const result = await runBrig(['run', '--memory', '128m', '--', './agent.pl'], { cwd: project, env });
    assert.equal(result.code, 137, result.stderr);
    assert.match(result.stderr, /killed agent\.pl \(pid 2 inside, [\d.]+ MiB resident\), the largest process at the limit: the command itself/);
  });

  test('an agent that is itself the hog ends the whole jail: 137 and BRIG_OUT_OF_MEMORY', async () => {
    const result = await runBrig(['agent', 'greedy-agent', '--memory', '64m', '-p', 'go'], { cwd: project, env });
    assert.equal(result.code, 137, result.stderr);
    assert.match(result.stderr, /killed whole: no process it could spare held that memory .*\[BRIG_OUT_OF_MEMORY\]/);
  });
});
