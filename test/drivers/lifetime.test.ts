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

  test('a program that changes its ids (QEMU -runas) loses the signal; supervised, it still dies with the parent, and its status comes back', async () => {
    const becomeNobody = ['/usr/bin/setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', '/bin/sleep', '600'];
    assert.equal(await diesWithParent(dieWithParent(becomeNobody)), false, 'without --supervise the setuid cleared it (why --supervise exists)');
    assert.equal(await diesWithParent(dieWithParent(becomeNobody, { supervise: true })), true);
    const [exec, ...args] = dieWithParent(['/bin/sh', '-c', 'exit 7'], { supervise: true });
    assert.equal(spawnSync(exec as string, args).status, 7, "the supervisor ends with the program's status");
    const killed = dieWithParent(['/bin/sh', '-c', 'kill -TERM $$'], { supervise: true });
    assert.equal(spawnSync(killed[0] as string, killed.slice(1)).signal, 'SIGTERM', 'and with its signal');
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

/** Starts `argv` from a shell standing in for brig, kills the shell outright, and says whether the program (sleep 600) went with it. */
async function diesWithParent(argv: string[]): Promise<boolean> {
  const words = argv.map((word) => (word === String(process.pid) ? '$$' : `'${word}'`));
  const parent = spawn('/bin/sh', ['-c', `${words.join(' ')} & echo $!; exec sleep 600`], { stdio: ['ignore', 'pipe', 'ignore'] });
  const first = await new Promise<number>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString()))));
  // The sleep: the program itself, or the supervisor's child.
  let sleeper = 0;
  try {
    assert.ok(await eventually(() => (sleeper = sleepIn(first)) > 0), 'the program runs');
    parent.kill('SIGKILL');
    return await eventually(() => !existsSync(`/proc/${sleeper}`), 100);
  } finally {
    parent.kill('SIGKILL');
    for (const pid of [first, sleeper]) if (pid > 0 && existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  }
}

/** `pid` if it runs sleep 600, else its child that does; 0 while neither does. */
function sleepIn(pid: number): number {
  if (commandOf(pid) === '/bin/sleep600') return pid;
  try {
    const child = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]);
    return child > 0 && commandOf(child) === '/bin/sleep600' ? child : 0;
  } catch {
    return 0;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', '');
  } catch {
    return '';
  }
}
