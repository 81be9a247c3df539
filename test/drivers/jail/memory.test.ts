import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runBrig, tempWorkspace } from '../../helpers/brig.ts';

// A jail at its memory limit (issue 10, item 8): on cgroup v1 the kernel pauses it there and
// waits; before brig chose a victim, every process in it hung forever. Each test blows a 64 MiB
// limit for real and must end.
describe('brig run at the memory limit', () => {
  let workspace: { dir: string; remove: () => void };
  const run = (command: string, flags: string[] = []) => runBrig(['run', '--memory', '64m', ...flags, '--', '/bin/sh', '-c', command], { cwd: workspace.dir });
  const HOG = `perl -e '$x = "a" x (400 * 1024 * 1024); print "survived\\n"'`;

  before(() => {
    workspace = tempWorkspace();
  });
  after(() => workspace.remove());

  test('kill-process (the default): the hog is killed, the command goes on, the summary names the hog', async () => {
    const result = await run(`${HOG}; echo "after $?"`);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /survived/);
    assert.match(result.stdout, /^after 137$/m);
    assert.match(result.stderr, /reached its memory limit \(64 MiB\) 1 time/);
    assert.match(result.stderr, /killed perl \(pid \d+ inside, [\d.]+ MiB resident\), the largest process at the limit; the rest went on/);
  });

  test('the largest process is the one killed, not a smaller one beside it', async () => {
    // A process of about 10 MiB waits while the hog grows past the limit: it must outlive the hog.
    const result = await run(`perl -e '$y = "b" x (4 * 1024 * 1024); sleep 2; print "small lived\\n"' & sleep 0.5; ${HOG}; wait`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /small lived/);
    assert.equal(result.stderr.match(/killed perl/g)?.length, 1, result.stderr);
  });

  test('a command that is itself the hog exits 137, with its summary', async () => {
    const result = await runBrig(['run', '--memory', '64m', '--', 'perl', '-e', '$x = "a" x (400 * 1024 * 1024); print "survived\\n"'], { cwd: workspace.dir });
    assert.equal(result.code, 137, result.stderr);
    assert.doesNotMatch(result.stdout, /survived/);
    assert.match(result.stderr, /killed perl \(pid 2 inside, [\d.]+ MiB resident\), the largest process at the limit: the command itself/);
  });

  test('kill-sandbox: the whole jail ends with 137 and BRIG_OUT_OF_MEMORY', async () => {
    const result = await run(`${HOG}; echo after`, ['--on-oom', 'kill-sandbox']);
    assert.equal(result.code, 137, result.stderr);
    assert.match(result.stderr, /killed whole: resources.onOutOfMemory is kill-sandbox \[BRIG_OUT_OF_MEMORY\]/);
    assert.doesNotMatch(result.stdout, /after/);
  });

  test('--on-oom refuses anything but kill-process and kill-sandbox', async () => {
    const result = await run('true', ['--on-oom', 'kill-everything']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /--on-oom kill-everything: expected kill-process or kill-sandbox \[BRIG_USAGE\]/);
  });
});
