import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { imageBuildCommand } from '../../src/cli/image-build.ts';
import { openImageStore, type StepRunner } from '../../src/images/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';

const templatesDir = resolve('src/images/templates');
const insideDir = resolve('dist/inside');

function scratch(t: { after: (fn: () => void) => void }): { base: string; state: string; context: string } {
  const base = mkdtempSync(join(tmpdir(), 'brig-image-build-'));
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  const context = join(base, 'context');
  mkdirSync(context);
  return { base, state: join(base, 'state'), context };
}

async function run(argv: string[], runStep?: StepRunner): Promise<{ code: number; log: string }> {
  let log = '';
  const code = await imageBuildCommand(argv, { templatesDir, insideDir, ...(runStep ? { runStep } : {}) }, (chunk) => (log += chunk.toString()));
  return { code, log };
}

async function usage(argv: string[], pattern: RegExp): Promise<void> {
  try {
    await run(argv);
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    assert.equal(error.code, 'BRIG_USAGE');
    assert.match(error.message, pattern);
    return;
  }
  assert.fail(`accepted: ${argv.join(' ')}`);
}

test('brig image build -f FILE -t NAME:TAG --build-arg DIR builds into <state>/images', async (t) => {
  const s = scratch(t);
  writeFileSync(join(s.context, 'hello.txt'), 'hello\n');
  writeFileSync(join(s.base, 'Recipe'), 'FROM scratch\nARG WHO=nobody\nCOPY hello.txt /srv/\nENV WHO=$WHO\n');
  const { code, log } = await run(['-f', join(s.base, 'Recipe'), '-t', 'hello:v1', '--build-arg', 'WHO=me', '--state', s.state, s.context]);
  assert.equal(code, 0);
  assert.match(log, /^Step 3\/4: COPY hello.txt \/srv\/$/m);
  assert.match(log, /tagged hello:v1/);
  const store = await openImageStore(join(s.state, 'images'));
  const image = await store.getImage('hello:v1');
  assert.deepEqual(image.config.env, ['WHO=me']);
  assert.equal(readFileSync(join(store.layerPath(image.layers[0] as string), 'srv/hello.txt'), 'utf8'), 'hello\n');
  const again = await run(['-f', join(s.base, 'Recipe'), '-t', 'hello:v1', '--build-arg', 'WHO=me', '--state', s.state, s.context]);
  assert.match(again.log, /CACHED/);
});

test('brig image build: DIR/Dockerfile by default; -t is needed; bad flags are usage errors', async (t) => {
  const s = scratch(t);
  writeFileSync(join(s.context, 'Dockerfile'), 'FROM scratch\nLABEL a=b\n');
  assert.equal((await run(['-t', 'x', '--state', s.state, s.context])).code, 0);
  await usage(['--state', s.state, s.context], /needs -t NAME/);
  await usage(['-t', 'x', '--state', s.state, join(s.base, 'nowhere')], /no Dockerfile at/);
  await usage(['-t', 'x', '--network', 'bridge', s.context], /expected mirror, none or host/);
  await usage(['-t', 'x', '--build-arg', 'NOEQUALS', s.context], /expected NAME=value/);
  await usage(['-t', 'x', s.context, 'extra'], /takes one directory/);
  const help = await run(['--help']);
  assert.match(help.log, /Usage: brig image build/);
});

test('brig image build base names the built-in template, whose Dockerfile parses', async () => {
  const text = readFileSync(join(templatesDir, 'base.Dockerfile'), 'utf8');
  assert.match(text, /^FROM debian:bookworm$/m);
  assert.match(text, /--no-install-recommends/);
  assert.match(text, /useradd .*--uid 1000/);
  const { parseDockerfile } = await import('../../src/images/index.ts');
  const parsed = parseDockerfile(text);
  assert.deepEqual(parsed.warnings, []);
  assert.deepEqual(parsed.instructions.map((one) => one.kind), ['FROM', 'RUN', 'RUN', 'RUN', 'ENV', 'WORKDIR', 'USER', 'CMD']);
});

// --network none: the mirror network's proxy is a bundle of dist/ (loadBundle), which tsx in-process cannot load
test('RUN steps run in a jail over the layers so far: files, deletions, ENV, ARG, WORKDIR and USER reach them; a failing step stops the build', async (t) => {
  const s = scratch(t);
  writeFileSync(join(s.context, 'greeting'), 'hello\n');
  const recipe = [
    'FROM debian:bookworm-slim',
    'ARG FLAVOUR=plain',
    'ENV GREETING_FILE=/srv/greeting',
    'COPY greeting /srv/',
    'RUN cat $GREETING_FILE > /srv/copy && echo "$FLAVOUR" > /srv/flavour && rm /etc/issue.net',
    'RUN useradd --create-home --uid 1000 user',
    'USER user',
    // made by the builder, owned by USER (as BuildKit does), so user can write in it; made before USER it is root's
    'WORKDIR /home/user/project',
    'RUN id -u > uid && pwd > cwd && touch mine',
  ].join('\n');
  writeFileSync(join(s.context, 'Dockerfile'), recipe);
  const first = await run(['-t', 'runs', '--network', 'none', '--build-arg', 'FLAVOUR=spicy', '--state', s.state, s.context]);
  assert.equal(first.code, 0, first.log);
  const store = await openImageStore(join(s.state, 'images'));
  const image = await store.getImage('runs');
  const find = (path: string): string => {
    for (const digest of [...image.layers].reverse()) {
      const host = join(store.layerPath(digest), path);
      try {
        lstatSync(host);
        return host;
      } catch {
        // not in this layer
      }
    }
    assert.fail(`${path} is in no layer`);
  };
  assert.equal(readFileSync(find('srv/copy'), 'utf8'), 'hello\n');
  assert.equal(readFileSync(find('srv/flavour'), 'utf8'), 'spicy\n');
  const whiteout = lstatSync(find('etc/issue.net'));
  assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'rm in a RUN step is an overlay whiteout in its layer');
  assert.equal(readFileSync(find('home/user/project/uid'), 'utf8'), '1000\n');
  assert.equal(readFileSync(find('home/user/project/cwd'), 'utf8'), '/home/user/project\n');
  const mine = lstatSync(find('home/user/project/mine'));
  assert.deepEqual([mine.uid, mine.gid], [1000, 1000], 'a file made by user in a RUN step is user\'s in the layer');
  const second = await run(['-t', 'runs', '--network', 'none', '--build-arg', 'FLAVOUR=spicy', '--state', s.state, s.context]);
  assert.equal((second.log.match(/---> CACHED/g) ?? []).length, 6, second.log);
  assert.deepEqual((await store.getImage('runs')).layers, image.layers);

  writeFileSync(join(s.context, 'Dockerfile'), `${recipe}\nRUN echo about to fail && exit 3`);
  try {
    await run(['-t', 'runs', '--network', 'none', '--build-arg', 'FLAVOUR=spicy', '--state', s.state, s.context]);
    assert.fail('a failing RUN step built');
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    assert.equal(error.code, 'BRIG_BUILD_FAILED');
    assert.match(error.message, /exited with code 3; its last output:\nabout to fail/);
  }
});
