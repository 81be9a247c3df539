import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitDirectory, openImageStore } from '../../src/images/index.ts';

/**
 * The layer format's promise, checked by the kernel itself: layer directories
 * stack as overlayfs lowerdirs as they are (whiteouts hide, opaque
 * directories hide), and what a sandbox changes in its upper dir, committed
 * with commitDirectory, stacks back to the same view.
 */

const asRoot = process.geteuid?.() === 0;

function mount(lowers: string[], target: string, upper?: { upper: string; work: string }): void {
  mkdirSync(target, { recursive: true });
  const options = [`lowerdir=${lowers.join(':')}`, ...(upper ? [`upperdir=${upper.upper}`, `workdir=${upper.work}`] : [])].join(',');
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', options, target]);
}

test('layers stack as overlay lowerdirs; a sandbox\'s deletions in its upper dir, committed, stack back to the same view', { skip: !asRoot && 'mounting overlayfs needs root' }, async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'brig-overlay-'));
  const mounted: string[] = [];
  t.after(() => {
    for (const target of mounted.reverse()) execFileSync('umount', [target]);
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  const store = await openImageStore(join(base, 'store'));
  // the lower layer, from a plain directory
  const tree = join(base, 'tree');
  for (const [path, content] of Object.entries({ 'etc/motd': 'hello', 'etc/keep': 'kept', 'cache/a': 'a', 'cache/b': 'b' })) {
    mkdirSync(join(tree, path, '..'), { recursive: true });
    writeFileSync(join(tree, path), content);
  }
  const lower = await store.layerDir((await commitDirectory(store, tree, 0)).digest);

  // a sandbox's view: the layer and an upper dir; it deletes a file and replaces a directory
  const upper = join(base, 'upper');
  const work = join(base, 'work');
  mkdirSync(upper);
  mkdirSync(work);
  const sandbox = join(base, 'sandbox');
  mount([lower], sandbox, { upper, work });
  mounted.push(sandbox);
  rmSync(join(sandbox, 'etc/motd'));
  rmSync(join(sandbox, 'cache'), { recursive: true });
  mkdirSync(join(sandbox, 'cache'));
  writeFileSync(join(sandbox, 'cache/c'), 'c');
  execFileSync('umount', [sandbox]);
  mounted.pop();

  // the kernel wrote a whiteout and an opaque directory into the upper dir: commit them as a layer
  const committed = await commitDirectory(store, upper, 0);
  assert.deepEqual(committed.whiteouts.sort(), ['cache/', 'etc/motd']);
  assert.deepEqual(committed.dropped, []);
  const top = await store.layerDir(committed.digest);

  // a fresh stack of the two read-only layers sees what the sandbox saw
  const view = join(base, 'view');
  mount([top, lower], view);
  mounted.push(view);
  assert.equal(existsSync(join(view, 'etc/motd')), false, 'the whiteout hides the lower file');
  assert.equal(readFileSync(join(view, 'etc/keep'), 'utf8'), 'kept');
  assert.deepEqual(readdirSync(join(view, 'cache')), ['c'], 'the opaque directory hides the lower one\'s files');
  assert.equal(readFileSync(join(lower, 'etc/motd'), 'utf8'), 'hello', 'the lower layer is unchanged');
});
