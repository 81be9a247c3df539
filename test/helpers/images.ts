import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { BRIG } from './brig.ts';
import { fileURLToPath } from 'node:url';
import { buildImage, openImageStore } from '../../src/images/index.ts';
import { imageStepRunner } from '../../src/cli/image-jail.ts';
import { processAlive } from '../../src/protocol/index.ts';

const INSIDE_DIR = fileURLToPath(new URL('../../dist/inside', import.meta.url));

/**
 * A Debian bookworm minbase root filesystem as a tar, made with mmdebstrap
 * from the host apt's mirror once per machine (or per CI run) and shared by
 * the tests: BRIG_TEST_CACHE names where, /var/tmp/brig-test-cache by default.
 */
export function debianTar(): string {
  const dir = testCacheDir();
  const tar = `${dir}/bookworm-minbase.tar`;
  if (existsSync(tar)) return tar;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  execFileSync('mmdebstrap', ['--quiet', '--variant=minbase', '--format=tar', 'bookworm', `${tar}.part`], { stdio: ['ignore', 'ignore', 'inherit'] });
  renameSync(`${tar}.part`, tar);
  return tar;
}

/**
 * A built-in template (base, code-interpreter, desktop), built once per
 * machine (or CI run) with `brig image build NAME` into a cached state
 * directory of its own (minutes the first time: Debian's packages come from
 * the mirror), then given to a daemon's state directory as hard links (its
 * layers are only ever read). One template per state directory. Returns
 * nothing; the store is at stateDir/images.
 */
export function seedTemplateImage(stateDir: string, template: 'base' | 'code-interpreter' | 'desktop'): void {
  const cached = `${process.env.BRIG_TEST_CACHE ?? '/var/tmp/brig-test-cache'}/${template}-state`;
  // Built again (its unchanged steps from the build cache) when the template's files changed since.
  const stamp = templateStamp(template);
  if (!existsSync(`${cached}/template.stamp`) || readFileSync(`${cached}/template.stamp`, 'utf8') !== stamp) {
    mkdirSync(cached, { recursive: true, mode: 0o700 });
    execFileSync(BRIG, ['image', 'build', template, '--state', cached], { stdio: ['ignore', 'ignore', 'inherit'] });
    writeFileSync(`${cached}/template.stamp`, stamp);
  }
  execFileSync('cp', ['-al', `${cached}/images`, `${stateDir}/images`]);
  // The copy's own lock and tmp: nothing of the cache's is shared but the layers' files.
  rmSync(`${stateDir}/images/lock`, { force: true });
}

/** A digest of the template's Dockerfile and its folder's files. */
function templateStamp(template: string): string {
  const dir = fileURLToPath(new URL('../../src/images/templates', import.meta.url));
  const hash = createHash('sha256').update(readFileSync(`${dir}/${template}.Dockerfile`));
  const files = (relative: string): string[] =>
    readdirSync(`${dir}/${relative}`, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? files(`${relative}/${entry.name}`) : [`${relative}/${entry.name}`]));
  if (existsSync(`${dir}/${template}`)) for (const file of files(template).sort()) hash.update(file).update(readFileSync(`${dir}/${file}`));
  return hash.digest('hex');
}

/** The base template (E2B's base), as seedTemplateImage. */
export function seedBaseImage(stateDir: string): void {
  seedTemplateImage(stateDir, 'base');
}

/**
 * Seeds the image store of a daemon's state directory (before the daemon
 * starts) with `name`: Debian minbase plus E2B's user `user` (uid 1000,
 * home /home/user) and GREETING=hi, the RUN step run in a real image jail.
 */
export async function seedUserImage(stateDir: string, name: string): Promise<void> {
  const store = await openImageStore(`${stateDir}/images`);
  const base = await store.importLayer(debianTar());
  await store.tagImage('test-debian', 'latest', { layers: [base.digest] });
  await buildTestImage(stateDir, name, 'FROM test-debian\nRUN useradd -m -u 1000 -s /bin/bash user\nENV GREETING=hi\n');
}

/** A Dockerfile built into a daemon's store (before the daemon starts), its RUN steps in real image jails, no network. */
export async function buildTestImage(stateDir: string, name: string, dockerfile: string): Promise<void> {
  const store = await openImageStore(`${stateDir}/images`);
  await buildImage({ store, dockerfile, context: stateDir, tag: name, runStep: imageStepRunner({ insideDir: INSIDE_DIR }), network: 'none', output: () => {} });
}

/** Where tests keep what is slow to make and the same every time: BRIG_TEST_CACHE, /var/tmp/brig-test-cache by default. */
function testCacheDir(): string {
  return process.env.BRIG_TEST_CACHE ?? '/var/tmp/brig-test-cache';
}

/** The image every test file that boots sandboxes from an image uses: Debian and E2B's `user` (seedUserImage). */
export const CACHED_USER_IMAGE = 'e2b-user';

/**
 * The layer directories (lowest first) of CACHED_USER_IMAGE from one store
 * shared by all test files, seeded once per machine (or per CI run) in
 * <cache>/user-image, under a lock so that test files running at the same
 * time do not seed it twice. Sharing it is safe: an image jail only reads its
 * layers (id-mapped, read-only mounts), and nothing prunes this store.
 */
export async function cachedUserImageLayers(): Promise<string[]> {
  const dir = `${testCacheDir()}/user-image`;
  const ready = `${dir}/ready`;
  if (!existsSync(ready)) {
    mkdirSync(testCacheDir(), { recursive: true, mode: 0o700 });
    await withLockFile(`${dir}.lock`, async () => {
      if (existsSync(ready)) return;
      // A seed cut off midway (the process killed) left a store nobody trusts: start again.
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { mode: 0o700 });
      await seedUserImage(dir, CACHED_USER_IMAGE);
      writeFileSync(ready, `${new Date().toISOString()}\n`);
    });
  }
  const store = await openImageStore(`${dir}/images`);
  const manifest = await store.getImage(CACHED_USER_IMAGE);
  return Promise.all(manifest.layers.map((digest) => store.layerDir(digest)));
}

/**
 * Runs fn holding `path`, a file naming its holder's pid: made whole or not
 * at all (a link of a file already written), so a waiter always reads a pid.
 * A holder that died leaves it behind; the next one takes it over.
 */
async function withLockFile<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, String(process.pid));
  try {
    for (;;) {
      try {
        linkSync(mine, path);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let holder: number;
      try {
        holder = Number(readFileSync(path, 'utf8').trim());
      } catch (error) {
        // Released meanwhile: try again.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      if (!processAlive(holder)) {
        rmSync(path, { force: true });
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    unlinkSync(mine);
  }
  try {
    return await fn();
  } finally {
    unlinkSync(path);
  }
}

