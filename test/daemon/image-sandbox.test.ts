import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { spawnSync } from 'node:child_process';
import { BRIG, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { buildTestImage, seedUserImage } from '../helpers/images.ts';

const API_KEY = 'brig_image_key';
const IMAGE = 'e2b-user';

function opts(daemon: RunningDaemon, extra: Partial<SandboxOpts> = {}): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...extra } as SandboxOpts;
}

/** The host pids in a sandbox's jail, from its cgroup. */
function jailPids(id: string): number[] {
  const procs = readFileSync(`/sys/fs/cgroup/pids/brig-${id}/cgroup.procs`, 'utf8');
  return procs.split('\n').filter(Boolean).map(Number);
}

function statusField(pid: number, field: string): string {
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
}

describe('sandboxes from images through the e2b SDK', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let sandbox: Sandbox;
  before(async () => {
    state = tempWorkspace('brig-image-serve-');
    await seedUserImage(state.dir, IMAGE);
    await buildTestImage(state.dir, 'with-workdir', `FROM ${IMAGE}\nWORKDIR /srv/app\nRUN chown user /srv/app\n`);
    // What a daemon killed with -9 mid-create leaves: a lease of a sandbox no record names. The next start drops it.
    mkdirSync(`${state.dir}/images/leases`, { recursive: true });
    writeFileSync(`${state.dir}/images/leases/ikilledmidway.json`, JSON.stringify({ layers: ['sha256:' + '0'.repeat(64)] }));
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    sandbox = await Sandbox.create(IMAGE, opts(daemon, { timeoutMs: 300_000 }));
  });
  after(async () => {
    for (const info of await Sandbox.list(opts(daemon)).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts(daemon)).catch(() => false);
    await daemon?.stop();
    state?.remove();
  });

  test("user: 'root' is root, the default is user with home /home/user and the image's ENV", async () => {
    const root = await sandbox.commands.run('id -u; whoami', { user: 'root' });
    assert.equal(root.stdout, '0\nroot\n');
    const plain = await sandbox.commands.run('id -u; whoami; echo "$HOME"; pwd; echo "$GREETING"; cat /etc/hostname; grep -c localhost /etc/hosts');
    assert.equal(plain.stdout, '1000\nuser\n/home/user\n/home/user\nhi\nbrig\n2\n');
  });

  test("the image's WORKDIR is where commands start by default; a user's process keeps no capability of root's", async () => {
    const other = await Sandbox.create('with-workdir', opts(daemon, { timeoutMs: 60_000 }));
    try {
      assert.equal((await other.commands.run('pwd; touch here && echo ok')).stdout, '/srv/app\nok\n');
      assert.equal((await other.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n');
      assert.equal((await other.commands.run('env | grep -c BRIG_ || true')).stdout, '0\n', 'envd keeps its own variables');
      assert.equal((await other.commands.run('grep -E "^Cap(Inh|Prm|Eff|Amb)" /proc/self/status | cut -f2 | sort -u')).stdout, '0000000000000000\n');
    } finally {
      await other.kill();
    }
  });

  test('/dev/shm is shared memory every user may use (1777), not a directory of root\'s', async () => {
    const shm = await sandbox.commands.run('stat -c "%a %F" /dev/shm; touch /dev/shm/mine && stat -c %U /dev/shm/mine');
    assert.equal(shm.stdout, '1777 directory\nuser\n');
  });

  test('a file written as user is owned by user, one written as root by root', async () => {
    await sandbox.files.write('/home/user/mine.txt', 'mine');
    await sandbox.files.write('/root/roots.txt', 'root', { user: 'root' });
    await sandbox.files.makeDir('/home/user/a/b');
    const listing = await sandbox.commands.run('stat -c "%u:%g %n" /home/user/mine.txt /root/roots.txt /home/user/a /home/user/a/b', { user: 'root' });
    assert.equal(listing.stdout, '1000:1000 /home/user/mine.txt\n0:0 /root/roots.txt\n1000:1000 /home/user/a\n1000:1000 /home/user/a/b\n');
    // user cannot read root's home: the two are distinct ids inside.
    await assert.rejects(sandbox.commands.run('cat /root/roots.txt'));
  });

  test('root inside is an unprivileged range on the host, with no capability there', async () => {
    const id = sandbox.sandboxId;
    const pids = jailPids(id);
    assert.ok(pids.length > 0);
    for (const pid of pids) {
      const [, effective] = statusField(pid, 'Uid').split(/\s+/).map(Number);
      assert.ok((effective ?? 0) >= 2 ** 20, `pid ${pid} runs as host uid ${effective}, not in an image range`);
    }
    // Its capabilities are its own namespace's: what needs the host's (a mount, a new user namespace) fails.
    const tries = await sandbox.commands.run('mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; unshare -U true 2>/dev/null; echo userns=$?; touch /x && chmod u+s /x 2>/dev/null; echo setuid=$?', { user: 'root' });
    assert.equal(tries.stdout, 'mount=32\nuserns=1\nsetuid=1\n');
  });

  test("writes stay in the sandbox's upper directory: the image's layers and the host's mount table are untouched", async () => {
    await sandbox.commands.run('echo changed > /etc/debian_version; rm /etc/hostname.bak 2>/dev/null; touch /usr/bin/planted', { user: 'root' });
    const layersDir = `${state.dir}/images/layers`;
    for (const layer of readdirSync(layersDir).filter((name) => /^[0-9a-f]{64}$/.test(name))) {
      assert.ok(!existsSync(`${layersDir}/${layer}/usr/bin/planted`));
      if (existsSync(`${layersDir}/${layer}/etc/debian_version`)) assert.notEqual(readFileSync(`${layersDir}/${layer}/etc/debian_version`, 'utf8'), 'changed\n');
    }
    const upper = `${state.dir}/sandboxes/${sandbox.sandboxId}/workspace/upper`;
    assert.equal(readFileSync(`${upper}/etc/debian_version`, 'utf8'), 'changed\n');
    // Its layers are leased while it runs: a prune elsewhere cannot take them from under its root.
    assert.ok(existsSync(`${state.dir}/images/leases/${sandbox.sandboxId}.json`));
    assert.ok(!existsSync(`${state.dir}/images/leases/ikilledmidway.json`), 'the lease of a sandbox the daemon does not know was dropped at start');
    // The overlay lives in the jail's own mount namespace: the daemon's host never sees it.
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(sandbox.sandboxId));
  });

  test("brig run --image: the image's USER (root here) and ENV, the exit code passed through, its writes dropped at the end; the workspace is the caller's", () => {
    const env = { ...process.env, BRIG_STATE_DIR: state.dir };
    const project = tempWorkspace('brig-image-project-');
    try {
      // The caller's project, owned by an ordinary user, with a file of someone else's in it.
      chownSync(project.dir, 1000, 1000);
      writeFileSync(`${project.dir}/theirs`, 'x\n');
      chownSync(`${project.dir}/theirs`, 4242, 4242);
      const first = spawnSync(BRIG, ['run', '--image', IMAGE, '--workspace', project.dir, '--', 'sh', '-c', 'id -un; echo "$GREETING"; touch /home/user/mark; echo made > made; stat -c %U made; echo no >> theirs || echo refused; touch foruser && chown user:user foruser && stat -c %U foruser; exit 7'], { env, encoding: 'utf8' });
      assert.equal(first.status, 7, first.stderr);
      // The test image sets no USER: root, as docker run would.
      assert.equal(first.stdout, 'root\nhi\nroot\nrefused\nuser\n');
      // A file given to another of the jail's users keeps that user's id of the range, as in a plain bind.
      assert.ok(statSync(`${project.dir}/foruser`).uid >= 2 ** 20);
      // The jail's root wrote the project as its owner would: the file is the owner's, not root's or the range's.
      assert.deepEqual([statSync(`${project.dir}/made`).uid, statSync(`${project.dir}/made`).gid], [1000, 1000]);
      assert.equal(readFileSync(`${project.dir}/theirs`, 'utf8'), 'x\n');
      const second = spawnSync(BRIG, ['run', '--image', IMAGE, '--workspace', project.dir, '--', 'sh', '-c', 'test -e /home/user/mark'], { env, encoding: 'utf8' });
      assert.equal(second.status, 1, 'a second run starts from the image again');
      const missing = spawnSync(BRIG, ['run', '--image', 'no-such', '--workspace', project.dir, '--', 'true'], { env, encoding: 'utf8' });
      assert.equal(missing.status, 125);
      assert.match(missing.stderr, /BRIG_IMAGE_NOT_FOUND/);
    } finally {
      project.remove();
    }
  });

  test('brig create --image boots from the image; an unknown image is BRIG_IMAGE_NOT_FOUND', () => {
    const env = { ...process.env, BRIG_URL: daemon.url, BRIG_API_KEY: API_KEY };
    const created = spawnSync(BRIG, ['create', '--image', IMAGE], { env, encoding: 'utf8' });
    assert.equal(created.status, 0, created.stderr);
    const id = created.stdout.trim();
    try {
      const ran = spawnSync(BRIG, ['exec', id, '--', 'sh', '-c', 'echo "$GREETING"; id -un'], { env, encoding: 'utf8' });
      assert.equal(ran.stdout, 'hi\nuser\n', ran.stderr);
    } finally {
      spawnSync(BRIG, ['rm', id], { env });
    }
    const missing = spawnSync(BRIG, ['create', '--image', 'no-such'], { env, encoding: 'utf8' });
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /no image 'no-such'/);
  });

  test('an unknown template is a 400 that names the images', async () => {
    await assert.rejects(Sandbox.create('no-such-image', opts(daemon)), (error: Error) => error.message.includes('400') && error.message.includes(`${IMAGE}:latest`));
  });

  test('as root with the network, apt-get install works and the package runs', { skip: process.env.BRIG_TEST_OFFLINE ? 'BRIG_TEST_OFFLINE' : false }, async () => {
    const online = await Sandbox.create(IMAGE, opts(daemon, { allowInternetAccess: true, timeoutMs: 600_000 }));
    try {
      const result = await online.commands.run('apt-get update -qq && apt-get install -y -qq --no-install-recommends cowsay >/dev/null && /usr/games/cowsay moo', { user: 'root', timeoutMs: 600_000 });
      assert.match(result.stdout, /< moo >/);
      // With the host's network, the host's resolver answers: its resolv.conf, not the one the image was built with.
      assert.equal((await online.commands.run('cat /etc/resolv.conf')).stdout, readFileSync('/etc/resolv.conf', 'utf8'));
    } finally {
      await online.kill();
    }
    assert.ok(!existsSync(`${state.dir}/images/leases/${online.sandboxId}.json`), 'a killed sandbox releases its lease');
  });
});
