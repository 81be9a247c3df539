import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canStage, stagedArgv } from '../../src/drivers/host/index.ts';

/**
 * The staging wrapper on its own: a bind source is mounted in a private
 * namespace, and the command runs only if what got mounted is the inode
 * brig checked.
 */
const skip = process.getuid?.() !== 0 || !canStage() ? 'staging needs root and perl' : false;

describe('staging bind sources', { skip }, () => {
  function setup(): { dir: string; source: string; identity: string; remove(): void } {
    const dir = mkdtempSync(join(tmpdir(), 'brig-gvisor-stage-'));
    const source = join(dir, 'source');
    mkdirSync(join(dir, 'bundle', 'stage', '0'), { recursive: true });
    mkdirSync(source);
    const stats = statSync(source, { bigint: true });
    return { dir, source, identity: `${stats.dev}:${stats.ino}`, remove: () => rmSync(dir, { recursive: true, force: true }) };
  }

  test('the checked inode is staged and the command runs, with it at the staging point', () => {
    const { dir, source, identity, remove } = setup();
    try {
      const [file, ...args] = stagedArgv(`${dir}/bundle`, `${dir}/stage.err`, null, [{ path: source, identity }], [], ['/usr/bin/stat', '-c', '%d:%i', `${dir}/bundle/stage/0`]);
      const result = spawnSync(file as string, args, { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout.trim(), identity);
      assert.notEqual(`${statSync(`${dir}/bundle/stage/0`, { bigint: true }).ino}`, identity.split(':')[1], 'the host never sees the staging mount');
    } finally {
      remove();
    }
  });

  test('a source that is no longer the inode checked (a link or another directory put in its place) stops the launch', () => {
    const { dir, source, remove } = setup();
    try {
      const [file, ...args] = stagedArgv(`${dir}/bundle`, `${dir}/stage.err`, null, [{ path: source, identity: '1:1' }], [], ['/usr/bin/echo', 'RAN']);
      const result = spawnSync(file as string, args, { encoding: 'utf8' });
      assert.equal(result.status, 125);
      assert.doesNotMatch(result.stdout, /RAN/);
      assert.match(readFileSync(`${dir}/stage.err`, 'utf8'), /changed between its check and its mount/);
    } finally {
      remove();
    }
  });

  test("an image's layers and upper become rootfs there, top layer first, the writes in the upper; the host sees no mount", () => {
    const { dir, remove } = setup();
    try {
      const layer = (name: string, files: Record<string, string>): string => {
        const path = join(dir, name);
        mkdirSync(path);
        for (const [file, text] of Object.entries(files)) writeFileSync(join(path, file), text);
        return path;
      };
      const layers = [layer('low', { a: 'low', b: 'low' }), layer('high', { b: 'high' })];
      const rwDir = join(dir, 'rw');
      mkdirSync(join(rwDir, 'upper'), { recursive: true });
      mkdirSync(join(rwDir, 'work'));
      mkdirSync(join(dir, 'bundle', 'rootfs'));
      mkdirSync(join(dir, 'bundle', 'layers', '0'), { recursive: true });
      mkdirSync(join(dir, 'bundle', 'layers', '1'));
      const image = { layers, dir: join(dir, 'bundle', 'layers'), rwDir, idBase: 0, idCount: 65_536 };
      const rootfs = join(dir, 'bundle', 'rootfs');
      const [file, ...args] = stagedArgv(`${dir}/bundle`, `${dir}/stage.err`, image, [], [], ['/bin/sh', '-c', `cat ${rootfs}/a ${rootfs}/b && echo new > ${rootfs}/c`]);
      const result = spawnSync(file as string, args, { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr + readStageErrors(dir));
      assert.equal(result.stdout, 'lowhigh');
      assert.equal(readFileSync(join(rwDir, 'upper', 'c'), 'utf8'), 'new\n');
      assert.deepEqual(readdirSync(rootfs), [], 'the overlay was mounted in the wrapper\'s namespace only');
      assert.equal(readFileSync(join(layers[1] as string, 'b'), 'utf8'), 'high', 'the layers are never written');
    } finally {
      remove();
    }
  });

  test('a fold is mounted read-only inside its staged directory when every directory down to it is root\'s alone; otherwise nothing starts', () => {
    const { dir, source, identity, remove } = setup();
    try {
      chmodSync(source, 0o755);
      mkdirSync(join(source, 'sub'), { mode: 0o755 });
      writeFileSync(join(source, 'sub', 'secret'), 'secret');
      mkdirSync(join(source, 'keys'), { mode: 0o700 });
      writeFileSync(join(source, 'keys', 'k'), 'k');
      mkdirSync(join(dir, 'bundle', 'files'));
      writeFileSync(join(dir, 'bundle', 'files', 'empty'), '');
      const staged = `${dir}/bundle/stage/0`;
      const folds = [
        { source: 0, path: 'sub/secret', kind: 'file' as const, file: 'empty', target: '/x/sub/secret' },
        { source: 0, path: 'keys', kind: 'dir' as const, target: '/x/keys' },
      ];
      const check = `wc -c < ${staged}/sub/secret; ls ${staged}/keys | wc -l; echo no > ${staged}/sub/secret || echo read-only`;
      const [file, ...args] = stagedArgv(`${dir}/bundle`, `${dir}/stage.err`, null, [{ path: source, identity }], folds, ['/bin/sh', '-c', check]);
      const result = spawnSync(file as string, args, { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr + readStageErrors(dir));
      assert.equal(result.stdout, '0\n0\nread-only\n');
      assert.equal(readFileSync(join(source, 'sub', 'secret'), 'utf8'), 'secret', 'the host file is untouched');

      // A directory on the way that another user could change (or a link put there) stops the launch.
      chownSync(join(source, 'sub'), 1000, 1000);
      const [again, ...rest] = stagedArgv(`${dir}/bundle`, `${dir}/stage.err`, null, [{ path: source, identity }], folds, ['/usr/bin/echo', 'RAN']);
      const refused = spawnSync(again as string, rest, { encoding: 'utf8' });
      assert.equal(refused.status, 125);
      assert.doesNotMatch(refused.stdout, /RAN/);
      assert.match(readStageErrors(dir), /no longer a directory only root may change: sub\/secret is not masked/);
    } finally {
      remove();
    }
  });
});

function readStageErrors(dir: string): string {
  try {
    return readFileSync(`${dir}/stage.err`, 'utf8');
  } catch {
    return '';
  }
}
