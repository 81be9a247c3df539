import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildImage, type BuildOptions, type BuildResult } from '../../src/images/build.ts';
import type { StepRunner } from '../../src/images/build-types.ts';
import { openImageStore, type ImageStore } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';

interface Scratch {
  base: string;
  context: string;
  store: ImageStore;
}

async function scratch(t: { after: (fn: () => void) => void }): Promise<Scratch> {
  const base = mkdtempSync(join(tmpdir(), 'brig-build-'));
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  const context = join(base, 'context');
  mkdirSync(context);
  return { base, context, store: await openImageStore(join(base, 'store')) };
}

function files(root: string, tree: Record<string, string>): void {
  for (const [path, content] of Object.entries(tree)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

async function build(s: Scratch, dockerfile: string, more: Partial<BuildOptions> = {}): Promise<BuildResult & { log: string }> {
  let log = '';
  const result = await buildImage({ store: s.store, dockerfile, context: s.context, tag: 'test:1', output: (chunk) => (log += chunk.toString()), ...more });
  return { ...result, log };
}

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string; hint: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    return { code: error.code, message: error.message, hint: error.hint };
  }
  assert.fail('the build succeeded');
}

/** Where an in-image path is in the image's layers (the top one that has it). */
function inImage(s: Scratch, layers: string[], path: string): string {
  for (const digest of [...layers].reverse()) {
    const host = join(s.store.layerPath(digest), path);
    if (existsSync(host) || lstatOrNull(host) !== null) return host;
  }
  assert.fail(`${path} is in no layer`);
}

function lstatOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function tmpEntries(s: Scratch): string[] {
  return readdirSync(join(s.store.dir, 'tmp'));
}

test('FROM scratch with ARG, ENV, COPY, WORKDIR, USER, LABEL, ENTRYPOINT and CMD: files in layers, config on the tag', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'app/main.py': 'print(1)\n', 'app/lib/util.py': 'x = 1\n', 'README': 'readme\n' });
  const { image, steps, log } = await build(
    s,
    [
      'ARG BASE=scratch',
      'FROM ${BASE}',
      'ARG VERSION=1.0',
      'ENV APP=/opt/app PATH=/usr/bin',
      'ENV VERSION=v${VERSION}',
      'COPY app $APP/',
      'COPY README /docs/',
      'WORKDIR $APP/data',
      'USER 1000:1000',
      'LABEL org.example.version=$VERSION "two words"="a b"',
      'ENTRYPOINT ["/bin/tini", "--"]',
      'CMD python3 main.py',
    ].join('\n'),
    { buildArgs: { VERSION: '2.5' } },
  );
  assert.deepEqual(image.config, {
    env: ['APP=/opt/app', 'PATH=/usr/bin', 'VERSION=v2.5'],
    workdir: '/opt/app/data',
    user: '1000:1000',
    cmd: ['/bin/sh', '-c', 'python3 main.py'],
    entrypoint: ['/bin/tini', '--'],
    labels: { 'org.example.version': 'v2.5', 'two words': 'a b' },
  });
  assert.equal(image.layers.length, 3, 'two COPY layers and the WORKDIR one');
  assert.equal(readFileSync(inImage(s, image.layers, 'opt/app/main.py'), 'utf8'), 'print(1)\n');
  assert.equal(readFileSync(inImage(s, image.layers, 'opt/app/lib/util.py'), 'utf8'), 'x = 1\n');
  assert.equal(readFileSync(inImage(s, image.layers, 'docs/README'), 'utf8'), 'readme\n');
  assert.ok(lstatSync(inImage(s, image.layers, 'opt/app/data')).isDirectory());
  assert.deepEqual(steps.map((step) => step.cached), [null, null, null, null, false, false, false, null, null, null, null]);
  assert.match(log, /^Step 5\/11: COPY app \$APP\/$/m);
  assert.match(log, /^Layers of test:1:$/m);
  assert.match(log, /^Total \d+ B in 3 layers/m);
  assert.deepEqual(tmpEntries(s), []);
});

test('a second build is all cache hits; a changed file misses from its COPY on, not before', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'one.txt': '1', 'two.txt': '2' });
  const dockerfile = 'FROM scratch\nCOPY one.txt /one\nENV X=1\nCOPY two.txt /two\nWORKDIR /w';
  const first = await build(s, dockerfile);
  const second = await build(s, dockerfile);
  assert.deepEqual(second.steps.map((step) => step.cached), [null, true, null, true, true]);
  assert.deepEqual(second.image.layers, first.image.layers);
  assert.match(second.log, /---> CACHED [0-9a-f]{12} /);
  writeFileSync(join(s.context, 'two.txt'), 'changed');
  const third = await build(s, dockerfile);
  assert.deepEqual(third.steps.map((step) => step.cached), [null, true, null, false, false]);
  assert.equal(readFileSync(inImage(s, third.image.layers, 'two'), 'utf8'), 'changed');
  // a changed ENV before a step changes its key too
  const fourth = await build(s, dockerfile.replace('X=1', 'X=2'));
  assert.deepEqual(fourth.steps.map((step) => step.cached), [null, true, null, false, false]);
});

test('a cache entry whose layer was pruned is a miss, not a broken image', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a': 'a' });
  await build(s, 'FROM scratch\nCOPY a /a');
  await s.store.removeImage('test:1');
  await s.store.prune();
  const again = await build(s, 'FROM scratch\nCOPY a /a');
  assert.deepEqual(again.steps.map((step) => step.cached), [null, false]);
  assert.equal(readFileSync(inImage(s, again.image.layers, 'a'), 'utf8'), 'a');
});

test('.dockerignore hides files from COPY; ! brings one back', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'src/a.js': 'a', 'src/secret.key': 'k', 'src/keep.key': 'keep', 'node_modules/x/index.js': 'x', '.dockerignore': '# comment\n**/*.key\n!src/keep.key\nnode_modules\n' });
  const { image } = await build(s, 'FROM scratch\nCOPY . /app/');
  const root = s.store.layerPath(image.layers[0] as string);
  assert.ok(existsSync(join(root, 'app/src/a.js')));
  assert.ok(existsSync(join(root, 'app/src/keep.key')));
  assert.ok(!existsSync(join(root, 'app/src/secret.key')));
  assert.ok(!existsSync(join(root, 'app/node_modules')));
  const missing = await failure(build(s, 'FROM scratch\nCOPY src/secret.key /k'));
  assert.equal(missing.code, 'BRIG_BUILD_FAILED');
  assert.match(missing.message, /not in the build context/);
});

test('a symlink in the context is copied as a symlink, its target never read', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'dir/real': 'real' });
  symlinkSync('/etc/shadow', join(s.context, 'dir/shadow'));
  symlinkSync('real', join(s.context, 'dir/near'));
  const { image } = await build(s, 'FROM scratch\nCOPY dir /d\nCOPY dir/shadow /top');
  const [first, second] = image.layers as [string, string];
  assert.equal(readlinkSync(join(s.store.layerPath(first), 'd/shadow')), '/etc/shadow');
  assert.equal(readlinkSync(join(s.store.layerPath(first), 'd/near')), 'real');
  assert.equal(readlinkSync(join(s.store.layerPath(second), 'top')), '/etc/shadow');
});

test('a source outside the context, or through a symlink, is refused', async (t) => {
  const s = await scratch(t);
  files(s.base, { 'outside.txt': 'secret' });
  symlinkSync('/etc', join(s.context, 'etc-link'));
  const escape = await failure(build(s, 'FROM scratch\nCOPY ../outside.txt /x'));
  assert.equal(escape.code, 'BRIG_BUILD_FAILED');
  assert.match(escape.message, /outside the build context/);
  const deep = await failure(build(s, 'FROM scratch\nCOPY a/../../outside.txt /x'));
  assert.match(deep.message, /outside the build context/);
  const through = await failure(build(s, 'FROM scratch\nCOPY etc-link/passwd /x'));
  assert.match(through.message, /passes through the symlink etc-link/);
  assert.deepEqual(tmpEntries(s), []);
});

test('COPY destinations: a file onto a name, into a dir/, several sources only into a dir/, globs', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a.json': 'a', 'b.json': 'b', 'c.txt': 'c' });
  const { image } = await build(s, 'FROM scratch\nCOPY c.txt /renamed\nCOPY c.txt /dir/\nCOPY *.json /conf/\nWORKDIR /w\nCOPY c.txt rel');
  assert.equal(readFileSync(inImage(s, image.layers, 'renamed'), 'utf8'), 'c');
  assert.equal(readFileSync(inImage(s, image.layers, 'dir/c.txt'), 'utf8'), 'c');
  assert.equal(readFileSync(inImage(s, image.layers, 'conf/a.json'), 'utf8'), 'a');
  assert.equal(readFileSync(inImage(s, image.layers, 'conf/b.json'), 'utf8'), 'b');
  assert.equal(readFileSync(inImage(s, image.layers, 'w/rel'), 'utf8'), 'c');
  const several = await failure(build(s, 'FROM scratch\nCOPY a.json b.json /conf'));
  assert.equal(several.code, 'BRIG_DOCKERFILE_INVALID');
  assert.match(several.message, /line 2: COPY of several sources needs a destination directory ending in \//);
  const none = await failure(build(s, 'FROM scratch\nCOPY *.yaml /conf/'));
  assert.match(none.message, /no file matches/);
});

test('COPY --chmod sets the mode; a file COPY into an existing directory of the image goes inside it', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'tool': '#!/bin/sh\n' });
  const { image } = await build(s, 'FROM scratch\nWORKDIR /usr/local/bin\nCOPY --chmod=0750 tool /usr/local/bin');
  const path = inImage(s, image.layers, 'usr/local/bin/tool');
  assert.equal(lstatSync(path).mode & 0o777, 0o750);
});

test('ADD of a local tar or tar.gz unpacks it through the safe extractor; its hostile entries are dropped', async (t) => {
  const s = await scratch(t);
  const script = [
    'import io, sys, tarfile',
    'def add(t, name, data=b"", kind=tarfile.REGTYPE, link=""):',
    '    info = tarfile.TarInfo(name); info.type = kind; info.linkname = link; info.size = len(data); t.addfile(info, io.BytesIO(data))',
    'for path, mode in ((sys.argv[1], "w"), (sys.argv[2], "w:gz")):',
    '    with tarfile.open(path, mode) as t:',
    '        add(t, "pkg/ok.txt", b"ok")',
    '        add(t, "../../escape.txt", b"evil")',
    '        add(t, "pkg/out", kind=tarfile.SYMTYPE, link="/etc")',
    '        add(t, "pkg/out/passwd", b"evil")',
  ].join('\n');
  execFileSync('python3', ['-c', script, join(s.context, 'bundle.tar'), join(s.context, 'bundle.tgz')]);
  files(s.context, { 'notes.txt': 'plain' });
  const { image } = await build(s, 'FROM scratch\nADD bundle.tar /opt/\nADD bundle.tgz /gz\nADD notes.txt /notes.txt');
  assert.equal(readFileSync(inImage(s, image.layers, 'opt/pkg/ok.txt'), 'utf8'), 'ok');
  assert.equal(readFileSync(inImage(s, image.layers, 'gz/pkg/ok.txt'), 'utf8'), 'ok');
  assert.equal(readlinkSync(inImage(s, image.layers, 'opt/pkg/out')), '/etc');
  assert.equal(readFileSync(inImage(s, image.layers, 'notes.txt'), 'utf8'), 'plain');
  for (const digest of image.layers) {
    assert.ok(!existsSync(join(s.store.layerPath(digest), 'escape.txt')));
    assert.ok(!existsSync(join(s.store.layerPath(digest), '..', 'escape.txt')));
  }
  assert.ok(!existsSync(join(s.base, 'escape.txt')));
  assert.notEqual(readFileSync('/etc/passwd', 'utf8'), 'evil');
});

test('FROM a brig image starts from its layers and config', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a': 'a', 'b': 'b' });
  const base = await buildImage({ store: s.store, dockerfile: 'FROM scratch\nCOPY a /a\nENV FROM_BASE=yes\nUSER 1000\nCMD ["sh"]', context: s.context, tag: 'base:v1', output: () => undefined });
  const { image } = await build(s, 'FROM base:v1\nCOPY b /b\nENTRYPOINT ["run"]');
  assert.deepEqual(image.layers.slice(0, 1), base.image.layers);
  assert.equal(image.layers.length, 2);
  assert.deepEqual(image.config.env, ['FROM_BASE=yes']);
  assert.equal(image.config.user, '1000');
  assert.equal(image.config.cmd, null, 'an ENTRYPOINT resets the base image\'s CMD, as in Docker');
  const unknown = await failure(build(s, 'FROM ubuntu:22.04\nRUN true'));
  assert.equal(unknown.code, 'BRIG_IMAGE_NOT_FOUND');
  assert.match(unknown.message, /line 1: FROM ubuntu:22.04: no such image in brig's store/);
  assert.match(unknown.hint, /debian:SUITE/);
  assert.match(unknown.hint, /base:v1/);
});

test('a COPY --chown or USER naming a user the image lacks fails the build clearly', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a': 'a' });
  const chown = await failure(build(s, 'FROM scratch\nCOPY --chown=nobody a /a'));
  assert.equal(chown.code, 'BRIG_BUILD_FAILED');
  assert.match(chown.message, /no user "nobody" in the image's \/etc\/passwd/);
  const workdir = await failure(build(s, 'FROM scratch\nUSER app\nWORKDIR /data'));
  assert.match(workdir.message, /no user "app"/);
});

test('a failed step keeps the cache of the steps before it', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'first': '1' });
  const dockerfile = 'FROM scratch\nCOPY first /first\nCOPY second /second';
  const failed = await failure(build(s, dockerfile));
  assert.equal(failed.code, 'BRIG_BUILD_FAILED');
  assert.match(failed.message, /"second" is not in the build context/);
  assert.deepEqual(tmpEntries(s), []);
  files(s.context, { 'second': '2' });
  const again = await build(s, dockerfile);
  assert.deepEqual(again.steps.map((step) => step.cached), [null, true, false]);
});

test('RUN without a runner fails the build and says why', async (t) => {
  const s = await scratch(t);
  const failed = await failure(build(s, 'FROM scratch\nRUN true'));
  assert.equal(failed.code, 'BRIG_BUILD_FAILED');
  assert.match(failed.message, /step 2 is a RUN, and this build has no way to run it/);
  assert.deepEqual(tmpEntries(s), []);
});

// A stand-in runner: the builder's side of the contract (what it passes, how it treats the result) is what these test.
test('a RUN step gets the layers, fresh dirs in the store\'s tmp, env with ARGs, workdir, user and network; a non-zero exit fails with its output', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a': 'a' });
  const seen: Parameters<StepRunner>[0][] = [];
  const runStep: StepRunner = async (step) => {
    seen.push(step);
    assert.deepEqual(readdirSync(step.upper), []);
    assert.ok(step.upper.startsWith(join(s.store.dir, 'tmp')));
    step.output(Buffer.from('compiling...\nerror: it broke\n'));
    return { exitCode: 2, idOffset: 0 };
  };
  const failed = await failure(build(s, 'FROM scratch\nCOPY a /a\nARG MODE=fast\nENV HOME=/root MODE=env-wins\nWORKDIR /src\nUSER 1000\nSHELL ["/bin/bash", "-c"]\nRUN make $MODE', { runStep, network: 'none' }));
  assert.equal(failed.code, 'BRIG_BUILD_FAILED');
  assert.match(failed.message, /step 8 \(RUN, Dockerfile line 8\) exited with code 2; its last output:\ncompiling...\nerror: it broke/);
  const step = seen[0];
  assert.ok(step);
  assert.equal(step.layers.length, 2);
  assert.equal(readFileSync(join(step.layers[0] ?? '', 'a'), 'utf8'), 'a', 'the COPY layer, lowest first');
  assert.ok(lstatSync(join(step.layers[1] ?? '', 'src')).isDirectory(), 'then the WORKDIR layer');
  assert.deepEqual(step.command, ['/bin/bash', '-c', 'make $MODE']);
  assert.deepEqual(step.env, { MODE: 'env-wins', HOME: '/root' });
  assert.equal(step.workdir, '/src');
  assert.equal(step.user, '1000');
  assert.equal(step.network, 'none');
  assert.deepEqual(tmpEntries(s), []);
  // the COPY and WORKDIR before it were kept
  const again = await failure(build(s, 'FROM scratch\nCOPY a /a\nARG MODE=fast\nENV HOME=/root MODE=env-wins\nWORKDIR /src\nUSER 1000\nSHELL ["/bin/bash", "-c"]\nRUN make $MODE', { runStep }));
  assert.match(again.message, /exited with code 2/);
  assert.match((await failure(build(s, 'FROM scratch\nRUN --network=host curl x', { runStep }))).message, /RUN --network=host needs the build to allow it/);
});

test('Ctrl-C during a RUN step leaves no half-written layer and an empty tmp', async (t) => {
  const s = await scratch(t);
  const controller = new AbortController();
  const runStep: StepRunner = async (step) => {
    writeFileSync(join(step.upper, 'half-written'), 'x');
    controller.abort();
    return { exitCode: 130, idOffset: 0 };
  };
  const before = readdirSync(join(s.store.dir, 'layers'));
  const failed = await failure(build(s, 'FROM scratch\nRUN sleep 100\nENV A=1', { runStep, signal: controller.signal }));
  assert.equal(failed.code, 'BRIG_BUILD_FAILED');
  assert.match(failed.message, /interrupted at step 2/);
  assert.deepEqual(readdirSync(join(s.store.dir, 'layers')), before);
  assert.deepEqual(tmpEntries(s), []);
  assert.ok(!existsSync(join(s.store.dir, 'build-cache.json')), 'nothing cached for the interrupted step');
});

test('owners: COPY files are root\'s unless --chown; a WORKDIR made under USER is theirs; an existing parent keeps its owner and mode', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'passwd': 'root:x:0:0::/root:/bin/sh\nuser:x:1000:1001::/home/user:/bin/bash\n', 'group': 'root:x:0:\nstaff:x:50:\n', 'f': 'f', 'dir/g': 'g' });
  const { image } = await build(
    s,
    ['FROM scratch', 'COPY passwd group /etc/', 'WORKDIR /home/user', 'COPY --chmod=0700 f /home/user/private/', 'COPY f /root-owned', 'COPY --chown=user:staff dir /home/user/dir', 'COPY --chown=1234 f /numeric', 'USER user', 'WORKDIR /home/user/work'].join('\n'),
  );
  const owner = (path: string): string => {
    const stats = lstatSync(inImage(s, image.layers, path));
    return `${stats.uid}:${stats.gid}`;
  };
  assert.equal(owner('root-owned'), '0:0');
  assert.equal(owner('home/user/dir/g'), '1000:50');
  assert.equal(owner('numeric'), '1234:1234', 'a uid without a gid is its own gid, as Docker does');
  assert.equal(owner('home/user/work'), '1000:1001', 'WORKDIR under USER user: uid and primary group from /etc/passwd');
  assert.equal(lstatSync(inImage(s, image.layers, 'home/user/private')).mode & 0o777, 0o755);
  assert.equal(lstatSync(inImage(s, image.layers, 'home/user/private/f')).mode & 0o777, 0o700);
  // the COPY into /home/user/dir staged /home/user with the image's own owner and mode, not root's 0755 over it
  const workdirLayer = image.layers[1] as string;
  const dirLayer = image.layers[4] as string;
  chownCheck(join(s.store.layerPath(workdirLayer), 'home/user'), join(s.store.layerPath(dirLayer), 'home/user'));
});

function chownCheck(original: string, restaged: string): void {
  const a = lstatSync(original);
  const b = lstatSync(restaged);
  assert.deepEqual([b.uid, b.gid, b.mode & 0o7777], [a.uid, a.gid, a.mode & 0o7777]);
}

test('noCache builds every step again and gives the same layers for the same files', async (t) => {
  const s = await scratch(t);
  files(s.context, { 'a': 'a', 'tree/b/c': 'c' });
  const dockerfile = 'FROM scratch\nCOPY a /a\nCOPY tree /opt/new/tree/\nWORKDIR /w/x';
  const first = await build(s, dockerfile);
  // past a second boundary, so a directory's mtime taken from the clock would show
  await new Promise((done) => setTimeout(done, 1100));
  const again = await build(s, dockerfile, { noCache: true });
  assert.deepEqual(again.steps.map((step) => step.cached), [null, false, false, false]);
  assert.doesNotMatch(again.log, /CACHED/);
  assert.deepEqual(again.image.layers, first.image.layers, 'the same files give the same layer digests, new directories included');
});
