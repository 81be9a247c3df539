import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { loadOrder, moduleDepends } from '../../../src/drivers/vm/modules.ts';
import { isBrigError } from '../../../src/protocol/index.ts';
import { fakeModule, writeFakeModules } from './fixtures.ts';

function withDir(fn: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brig-modules-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const moduleError = (pattern: RegExp) => (error: unknown) => isBrigError(error) && error.code === 'BRIG_VM_KERNEL_MODULE' && pattern.test(error.message);

test(
  'moduleDepends reads depends= from the .modinfo section, with - read as _',
  withDir((dir) => {
    writeFileSync(`${dir}/a.ko`, fakeModule(['license=GPL', 'depends=virtio-ring,fuse', 'name=a']));
    writeFileSync(`${dir}/none.ko`, fakeModule(['depends=', 'name=none']));
    writeFileSync(`${dir}/silent.ko`, fakeModule(['name=silent']));
    assert.deepEqual(moduleDepends(`${dir}/a.ko`), ['virtio_ring', 'fuse']);
    assert.deepEqual(moduleDepends(`${dir}/none.ko`), []);
    assert.deepEqual(moduleDepends(`${dir}/silent.ko`), []);
  }),
);

test(
  'moduleDepends refuses a file that is not a 64-bit ELF module, naming it',
  withDir((dir) => {
    writeFileSync(`${dir}/text.ko`, 'depends=fuse\n'.repeat(10));
    assert.throws(() => moduleDepends(`${dir}/text.ko`), moduleError(/text\.ko: not an ELF file/));
    const noModinfo = fakeModule(['depends=']);
    // rename the section: .modinfo -> .modinf0
    noModinfo.write('0', 64 + '\0.shstrtab\0.modinf'.length);
    writeFileSync(`${dir}/plain.ko`, noModinfo);
    assert.throws(() => moduleDepends(`${dir}/plain.ko`), moduleError(/plain\.ko: it has no \.modinfo section/));
    assert.throws(() => moduleDepends(`${dir}/cut.ko`), moduleError(/cut\.ko cannot be read/));
    writeFileSync(`${dir}/cut.ko`, fakeModule(['depends=']).subarray(0, 100));
    assert.throws(() => moduleDepends(`${dir}/cut.ko`), moduleError(/cut\.ko: its section table is cut short/));
  }),
);

test(
  'loadOrder puts every module after what it depends on, depth first in the order asked, found anywhere in the tree',
  withDir(async (dir) => {
    writeFakeModules(dir, {
      'kernel/fs/a.ko': 'c,b',
      'kernel/lib/b.ko': '',
      'kernel/drivers/c.ko': 'b',
      'kernel/net/d-e.ko': 'b',
      'kernel/net/unwanted.ko': 'a',
    });
    const order = await loadOrder(dir, ['a', 'd_e']);
    assert.deepEqual(
      order.map((file) => basename(file)),
      ['b.ko', 'c.ko', 'a.ko', 'd-e.ko'],
    );
    assert.equal(order[0], join(dir, 'kernel/lib/b.ko'));
    assert.deepEqual(await loadOrder(dir, ['d-e', 'c']), [join(dir, 'kernel/lib/b.ko'), join(dir, 'kernel/net/d-e.ko'), join(dir, 'kernel/drivers/c.ko')]);
  }),
);

test(
  'loadOrder refuses a missing module (naming who needs it), a compressed one, a circle, and a name two files claim',
  withDir(async (dir) => {
    writeFakeModules(dir, { 'x/a.ko': 'b', 'x/b.ko': 'gone', 'y/p.ko': 'q', 'y/q.ko': 'p' });
    await assert.rejects(loadOrder(dir, ['erofs']), moduleError(/has no module erofs \(the VM guest needs it\)/));
    await assert.rejects(loadOrder(dir, ['a']), moduleError(/has no module gone \(b depends on it\)/));
    await assert.rejects(loadOrder(dir, ['p']), moduleError(/in a circle: p -> q -> p/));
    writeFileSync(`${dir}/x/erofs.ko.xz`, 'xz data');
    await assert.rejects(loadOrder(dir, ['erofs']), moduleError(/module erofs \(the VM guest needs it\) is compressed \(erofs\.ko\.xz\); brig reads plain \.ko files only/));
    writeFakeModules(dir, { 'z/a.ko': '' });
    await assert.rejects(loadOrder(dir, ['b']), moduleError(/two files are module a/));
  }),
);
