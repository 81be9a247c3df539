import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Sandbox, type SandboxOpts } from 'e2b';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { seedUserImage } from '../helpers/images.ts';
import { openImageStore } from '../../src/images/index.ts';
import { commitSandbox, writeImageSource } from '../../src/daemon/sandboxes/commit.ts';
import { MAX_IMAGE_LAYERS } from '../../src/images/index.ts';

const API_KEY = 'brig_commit_key';
const IMAGE = 'e2b-user';

function opts(daemon: RunningDaemon, extra: Partial<SandboxOpts> = {}): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...extra } as SandboxOpts;
}

async function api<T>(daemon: RunningDaemon, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { 'X-API-KEY': API_KEY, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: (text === '' ? null : JSON.parse(text)) as T };
}

interface Committed {
  image: string;
  layers: string[];
  dropped: Array<{ path: string; why: string }>;
}

describe('commit and snapshots of image sandboxes', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  const layerDir = (digest: string): string => `${state.dir}/images/layers/${digest.slice('sha256:'.length)}`;
  const upperOf = (id: string): string => `${state.dir}/sandboxes/${id}/workspace/upper`;

  before(async () => {
    state = tempWorkspace('brig-commit-');
    await seedUserImage(state.dir, IMAGE);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
  });
  after(async () => {
    for (const info of await Sandbox.list(opts(daemon)).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts(daemon)).catch(() => false);
    await daemon?.stop();
    state?.remove();
  });

  test("the SDK's createSnapshot, then Sandbox.create(snapshotId): the files with their owners, the image's env", async () => {
    const source = await Sandbox.create(IMAGE, opts(daemon));
    await source.files.write('/home/user/note.txt', 'kept');
    await source.files.write('/root/secret.txt', 'root only', { user: 'root' });
    await source.commands.run('rm /etc/debian_version', { user: 'root' });
    const snapshot = await source.createSnapshot();
    assert.match(snapshot.snapshotId, /^snapshot-[0-9a-f]{12}:latest$/);
    assert.deepEqual(snapshot.names, [snapshot.snapshotId]);
    // The source keeps running, as with docker commit.
    assert.equal((await source.commands.run('cat /home/user/note.txt')).stdout, 'kept');

    const copy = await Sandbox.create(snapshot.snapshotId, opts(daemon));
    try {
      assert.equal(await copy.files.read('/home/user/note.txt'), 'kept');
      const owners = await copy.commands.run('stat -c "%u:%g %a %n" /home/user/note.txt /root/secret.txt; test -e /etc/debian_version || echo deleted; echo "$GREETING"', { user: 'root' });
      assert.equal(owners.stdout, '1000:1000 644 /home/user/note.txt\n0:0 644 /root/secret.txt\ndeleted\nhi\n');
      // Its writes are its own: the source does not see them.
      await copy.files.write('/home/user/note.txt', 'changed in the copy');
      assert.equal((await source.commands.run('cat /home/user/note.txt')).stdout, 'kept');
    } finally {
      await copy.kill();
    }

    const listed = await Sandbox.listSnapshots({ ...opts(daemon), sandboxId: source.sandboxId }).nextItems();
    assert.deepEqual(listed.map((item) => item.snapshotId), [snapshot.snapshotId]);
    const named = await source.createSnapshot({ name: 'my-snapshot:v1' });
    assert.equal(named.snapshotId, 'my-snapshot:v1');
    assert.deepEqual((await Sandbox.listSnapshots({ ...opts(daemon), name: 'my-snapshot:v1' }).nextItems()).map((item) => item.snapshotId), ['my-snapshot:v1']);
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId, opts(daemon)), true);
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId, opts(daemon)), false);
    await assert.rejects(Sandbox.create(snapshot.snapshotId, opts(daemon)), /400/);
    await source.kill();
  });

  test('a commit builds on the layers the sandbox booted from, even after its image was retagged; the same writes give the same layer', async () => {
    const store = await openImageStore(`${state.dir}/images`);
    const original = await store.getImage(IMAGE);
    await store.tagImage(IMAGE, 'moving', { layers: original.layers, config: original.config });
    const sandbox = await Sandbox.create(`${IMAGE}:moving`, opts(daemon));
    try {
      // Retagged under it to the bare Debian image, without user `user`.
      const debian = await store.getImage('test-debian');
      await store.tagImage(IMAGE, 'moving', { layers: debian.layers });
      const committed = await api<Committed>(daemon, 'POST', `/v1/sandboxes/${sandbox.sandboxId}/commit`, { image: 'after-retag' });
      assert.equal(committed.status, 201);
      assert.equal(committed.body.image, 'after-retag:latest');
      assert.deepEqual(committed.body.layers.slice(0, -1), original.layers);
      const image = await store.getImage('after-retag');
      assert.deepEqual(image.config.env, original.config.env);
      // Nothing written since: the same top layer again (layerTar is stable), kept once.
      const again = await api<Committed>(daemon, 'POST', `/v1/sandboxes/${sandbox.sandboxId}/commit`, { image: 'after-retag:again' });
      assert.deepEqual(again.body.layers, committed.body.layers);
    } finally {
      await sandbox.kill();
    }
  });

  test('brig commit NAME IMAGE:TAG through the CLI; GET /templates lists the images, base and the profiles', async () => {
    const sandbox = await Sandbox.create(IMAGE, opts(daemon));
    try {
      await sandbox.files.write('/home/user/from-cli.txt', 'cli');
      const result = await runBrig(['commit', sandbox.sandboxId, 'cli-image:v1'], { env });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'cli-image:v1\n');
      const asJson = await runBrig(['commit', '--json', sandbox.sandboxId, 'cli-image:v2'], { env });
      assert.equal(asJson.code, 0, asJson.stderr);
      const parsed = JSON.parse(asJson.stdout) as Committed;
      assert.equal(parsed.image, 'cli-image:v2');
      assert.equal(parsed.layers.length, 3);
      assert.deepEqual(parsed.dropped, []);
      const usage = await runBrig(['commit', sandbox.sandboxId], { env });
      assert.equal(usage.code, 125);
      assert.match(usage.stderr, /BRIG_USAGE/);
      const bad = await runBrig(['commit', sandbox.sandboxId, 'Not A Name'], { env });
      assert.equal(bad.code, 125);
      assert.match(bad.stderr, /BRIG_IMAGE_INVALID/);
    } finally {
      await sandbox.kill();
    }
    const fromCli = await Sandbox.create('cli-image:v1', opts(daemon));
    try {
      assert.equal(await fromCli.files.read('/home/user/from-cli.txt'), 'cli');
    } finally {
      await fromCli.kill();
    }

    const templates = await api<Array<{ templateID: string; aliases: string[]; buildStatus: string; diskSizeMB: number }>>(daemon, 'GET', '/templates');
    assert.equal(templates.status, 200);
    const ids = templates.body.map((template) => template.templateID);
    for (const id of [`${IMAGE}:latest`, 'cli-image:v1', 'test-debian:latest', 'base', 'claude-code']) assert.ok(ids.includes(id), `${id} not in ${ids.join(', ')}`);
    const image = templates.body.find((template) => template.templateID === `${IMAGE}:latest`);
    assert.deepEqual(image?.aliases, [IMAGE]);
    assert.equal(image?.buildStatus, 'ready');
    assert.ok((image?.diskSizeMB ?? 0) > 10);
    // 'base' is the host view here (no image base): not an image to delete.
    assert.equal((await api(daemon, 'DELETE', '/templates/base')).status, 400);
  });

  test('a host-view sandbox is refused: it has no root of its own', async () => {
    const host = await Sandbox.create('base', opts(daemon));
    try {
      const result = await runBrig(['commit', host.sandboxId, 'host-copy'], { env });
      assert.equal(result.code, 125);
      assert.match(result.stderr, /BRIG_COMMIT_UNSUPPORTED/);
      assert.match(result.stderr, /host's own view/);
      await assert.rejects(host.createSnapshot(), /400/);
      assert.ok(!(await api<unknown[]>(daemon, 'GET', '/templates')).body.some((template) => JSON.stringify(template).includes('host-copy')));
    } finally {
      await host.kill();
    }
    const missing = await runBrig(['commit', 'no-such-sandbox', 'x'], { env });
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /BRIG_SANDBOX_NOT_FOUND/);
  });

  test('links to host paths are kept as links, set-id bits cleared, devices and fifos left out', async () => {
    const sandbox = await Sandbox.create(IMAGE, opts(daemon));
    try {
      await sandbox.commands.run('ln -s /etc/shadow /root/shadow-link && ln -s / /root/host-root && ln -s ../../../../../../etc /root/up-link && mkfifo /root/fifo', { user: 'root' });
      // What seccomp and the user namespace refuse inside (a setuid file, a device) is planted from the
      // host into the sandbox's upper dir, owned by its ids: the sandbox that got past them.
      const upper = upperOf(sandbox.sandboxId);
      const idBase = statSync(upper).uid;
      writeFileSync(`${upper}/root/suid`, '#!/bin/sh\n');
      chownSync(`${upper}/root/suid`, idBase, idBase);
      chmodSync(`${upper}/root/suid`, 0o6755);
      mkdirSync(`${upper}/root/sgid-dir`);
      chownSync(`${upper}/root/sgid-dir`, idBase, idBase);
      chmodSync(`${upper}/root/sgid-dir`, 0o2775);
      execFileSync('mknod', [`${upper}/root/null`, 'c', '1', '3']);
      execFileSync('mknod', [`${upper}/root/disk`, 'b', '7', '0']);
      // A host file the links name, which must not be read into the layer.
      const marker = `${state.dir}/host-marker`;
      writeFileSync(marker, 'host secret');
      await sandbox.commands.run(`ln -s ${marker} /root/marker-link`, { user: 'root' });

      const committed = await api<Committed>(daemon, 'POST', `/v1/sandboxes/${sandbox.sandboxId}/commit`, { image: 'hostile' });
      assert.equal(committed.status, 201);
      const top = layerDir(committed.body.layers.at(-1) as string);
      assert.equal(readlinkSync(`${top}/root/shadow-link`), '/etc/shadow');
      assert.equal(readlinkSync(`${top}/root/host-root`), '/');
      assert.equal(readlinkSync(`${top}/root/up-link`), '../../../../../../etc');
      assert.equal(readlinkSync(`${top}/root/marker-link`), marker);
      for (const link of ['shadow-link', 'host-root', 'up-link', 'marker-link']) assert.ok(lstatSync(`${top}/root/${link}`).isSymbolicLink());
      // Nothing behind a link was walked: the layer holds the sandbox's writes only.
      assert.deepEqual(readdirSync(`${top}/root`).sort(), ['host-root', 'marker-link', 'sgid-dir', 'shadow-link', 'suid', 'up-link']);
      assert.equal(lstatSync(`${top}/root/suid`).mode & 0o7777, 0o755);
      assert.equal(lstatSync(`${top}/root/sgid-dir`).mode & 0o7777, 0o775);
      assert.equal(lstatSync(`${top}/root/suid`).uid, 0);
      assert.ok(!existsSync(`${top}/root/null`) && !existsSync(`${top}/root/disk`) && !existsSync(`${top}/root/fifo`));
      const cleared = committed.body.dropped.filter((entry) => entry.why === 'set-id bits cleared').map((entry) => entry.path).sort();
      assert.deepEqual(cleared, ['root/sgid-dir', 'root/suid']);
      for (const file of walk(top)) assert.ok(!readFileSync(file).includes('host secret'), `${file} holds the host file's content`);

      // A sandbox from it resolves the links in its own root.
      const copy = await Sandbox.create('hostile', opts(daemon));
      try {
        const seen = await copy.commands.run(`readlink /root/marker-link; cat /root/marker-link 2>&1 || echo absent; stat -c %a /root/suid`, { user: 'root' });
        assert.match(seen.stdout, new RegExp(`^${marker}\n.*No such file.*\nabsent\n755\n$`, 's'));
      } finally {
        await copy.kill();
      }
    } finally {
      await sandbox.kill();
    }
  });
});

describe('commitSandbox refusals, before anything is read', () => {
  test('a sandbox at the layer limit, one without a record of its layers, one without an image', async () => {
    const state = tempWorkspace('brig-commit-unit-');
    try {
      const store = await openImageStore(`${state.dir}/images`);
      const sandboxDir = `${state.dir}/sandbox`;
      mkdirSync(`${sandboxDir}/workspace/upper`, { recursive: true });
      const request = { sandbox: 'i0', sandboxDir, fromImage: true, ref: 'out' };
      await assert.rejects(commitSandbox(store, { ...request, fromImage: false }), { code: 'BRIG_COMMIT_UNSUPPORTED', message: /host's own view/ });
      await assert.rejects(commitSandbox(store, request), { code: 'BRIG_COMMIT_UNSUPPORTED', message: /no record of the image layers/ });
      await assert.rejects(commitSandbox(undefined, request), { code: 'BRIG_IMAGE_NEEDS_ROOT' });
      const config = { env: [], workdir: '/', user: 'root', cmd: null, entrypoint: null, labels: {} };
      const layer = `sha256:${'a'.repeat(64)}`;
      writeImageSource(sandboxDir, { ref: 'deep:latest', layers: Array.from({ length: MAX_IMAGE_LAYERS }, () => layer), config, idBase: 1 << 20 });
      await assert.rejects(commitSandbox(store, request), { code: 'BRIG_COMMIT_UNSUPPORTED', message: /more than the 128/ });
      writeImageSource(sandboxDir, { ref: 'gone:latest', layers: [layer], config, idBase: 1 << 20 });
      await assert.rejects(commitSandbox(store, request), { code: 'BRIG_IMAGE_NOT_FOUND', message: /no longer in the store/ });
      await assert.rejects(commitSandbox(store, { ...request, ref: 'Bad Name' }), { code: 'BRIG_IMAGE_INVALID' });
      // Nothing was imported or tagged by any of them.
      assert.deepEqual(await store.listImages(), []);
      assert.deepEqual(readdirSync(`${state.dir}/images/layers`), []);
    } finally {
      state.remove();
    }
  });
});

/** Every regular file under dir, links not followed. */
function walk(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = `${dir}/${name}`;
    const stats = lstatSync(path);
    if (stats.isDirectory()) files.push(...walk(path));
    else if (stats.isFile()) files.push(path);
  }
  return files;
}
