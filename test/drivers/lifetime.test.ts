import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dieWithParent } from '../../src/drivers/host/index.ts';
import { eventually } from '../helpers/brig.ts';

/** What a program started with dieWithParent does when its parent goes: QEMU, runsc and a host-root bubblewrap rely on it. */
describe('dieWithParent (brig-exec --die-with)', () => {
  test('the program dies with the parent that started it', async () => {
    // A shell stands in for brig: it starts the program, says its pid and is killed outright.
    const argv = dieWithParent(['/bin/sleep', '600']).map((word) => (word === String(process.pid) ? '$$' : `'${word}'`));
    const parent = spawn('/bin/sh', ['-c', `${argv.join(' ')} & echo $!; exec sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = await new Promise<number>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString()))));
    try {
      assert.ok(await eventually(() => commandOf(pid) === '/bin/sleep600'), 'the program runs while its parent does');
      parent.kill('SIGKILL');
      assert.ok(await eventually(() => !existsSync(`/proc/${pid}`)), 'the program is gone with its parent');
    } finally {
      parent.kill('SIGKILL');
      if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a parent that is already gone (its pid no longer the parent\'s) ends the program before it runs', () => {
    const [exec, , , ...rest] = dieWithParent(['/bin/echo', 'ran']);
    const result = spawnSync(exec as string, ['--die-with', '1', ...rest], { encoding: 'utf8' });
    assert.equal(result.signal, 'SIGKILL');
    assert.equal(result.stdout, '');
  });

  test('only fds 0-2 reach the program', () => {
    const [exec, ...args] = dieWithParent(['/bin/ls', '/proc/self/fd']);
    const result = spawnSync(exec as string, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n').map(Number).sort(), [0, 1, 2, 3], 'stdio and ls\'s own directory fd, not the two pipes handed over at 3 and 4');
  });
});

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', '');
  } catch {
    return '';
  }
}
