import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { BRIG, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { buildTestImage, seedUserImage } from '../helpers/images.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';
import { release as hostRelease } from 'node:os';

/**
 * Image sandboxes on the tiers that map no ids, gVisor and the VM: the
 * image's files keep the ids they have inside, so its upper holds what a
 * layer holds (root's files are uid 0 on the host), a commit shifts nothing,
 * and a snapshot boots the same on either tier. Root inside is the Sentry's
 * root, or the guest's: what it writes reaches the host (through the gofer,
 * or virtiofsd), so no setuid, setgid or device file is let through.
 */

const API_KEY = 'brig_unmapped_image_key';
const HOSTILE = 'hostile-links';
/** Where a hostile image's link points on the host: nothing may ever appear there. */
const escapeDir = `/tmp/brig-image-escape-${process.pid}`;
const IMAGE = 'e2b-user';
/** What each tier's kernel says it is, and the code its refusals carry. */
const TIERS = [
  { tier: 'gvisor', kernel: (release: string) => assert.equal(release, '4.4.0\n'), refusal: /BRIG_GVISOR_UNSUPPORTED/ },
  { tier: 'vm', kernel: (release: string) => assert.ok(release.trim() !== '' && release.trim() !== hostRelease(), `its own kernel: ${release}`), refusal: /BRIG_VM_UNSUPPORTED/ },
];

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/** A create naming its tier (brig's field beside E2B's), then the e2b SDK connected to it. */
async function createOn(daemon: RunningDaemon, template: string, tier?: string): Promise<Sandbox> {
  const response = await fetch(`${daemon.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': API_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ templateID: template, timeout: 300, ...(tier ? { tier } : {}) }),
  });
  const body = (await response.json()) as { sandboxID: string };
  assert.equal(response.status, 201, JSON.stringify(body));
  return Sandbox.connect(body.sandboxID, opts(daemon));
}

for (const { tier, kernel, refusal } of TIERS) {
const skip = process.getuid?.() !== 0 ? 'image sandboxes need root' : (TEST_TIERS.find((entry) => entry.tier === tier)?.skip ?? `no ${tier} tier`);
describe(`image sandboxes on the ${tier} tier`, { skip }, () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let sandbox: Sandbox;
  const upperOf = (id: string): string => `${state.dir}/sandboxes/${id}/workspace/upper`;
  before(async () => {
    state = tempWorkspace(`brig-${tier}-image-`);
    await seedUserImage(state.dir, IMAGE);
    // Hostile: a link where brig mounts (/run/brig, under which it binds its own files) to a host directory anyone may write, as
    // bubblewrap sees the host's root while it sets up (/oldroot).
    mkdirSync(escapeDir, { mode: 0o1777 });
    chmodSync(escapeDir, 0o1777);
    await buildTestImage(state.dir, HOSTILE, `FROM ${IMAGE}\nRUN rm -rf /run/brig && ln -s /oldroot${escapeDir} /run/brig\n`);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    sandbox = await createOn(daemon, IMAGE, tier);
  });
  after(async () => {
    for (const info of await Sandbox.list(opts(daemon)).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts(daemon)).catch(() => false);
    await daemon?.stop();
    state?.remove();
    rmSync(escapeDir, { recursive: true, force: true });
  });

  test("the tier's kernel, root as root, the default user with the image's home and ENV", async () => {
    kernel((await sandbox.commands.run('uname -r')).stdout);
    assert.equal((await sandbox.commands.run('id -u; whoami', { user: 'root' })).stdout, '0\nroot\n');
    const plain = await sandbox.commands.run('id -u; whoami; echo "$HOME"; pwd; echo "$GREETING"; cat /etc/hostname');
    assert.equal(plain.stdout, '1000\nuser\n/home/user\n/home/user\nhi\nbrig\n');
  });

  test("files keep the ids they have inside, in the sandbox's upper on the host; the layers and the host's mounts are untouched", async () => {
    await sandbox.files.write('/home/user/mine.txt', 'mine');
    await sandbox.files.write('/root/roots.txt', 'root', { user: 'root' });
    await sandbox.commands.run('echo changed > /etc/debian_version; touch /usr/bin/planted', { user: 'root' });
    const inside = await sandbox.commands.run('stat -c "%u:%g %n" /home/user/mine.txt /root/roots.txt', { user: 'root' });
    assert.equal(inside.stdout, '1000:1000 /home/user/mine.txt\n0:0 /root/roots.txt\n');
    await assert.rejects(sandbox.commands.run('cat /root/roots.txt'), 'user cannot read root\'s home');
    const upper = upperOf(sandbox.sandboxId);
    assert.deepEqual([statSync(`${upper}/home/user/mine.txt`).uid, statSync(`${upper}/home/user/mine.txt`).gid], [1000, 1000]);
    assert.deepEqual([statSync(`${upper}/root/roots.txt`).uid, statSync(`${upper}/root/roots.txt`).gid], [0, 0]);
    assert.equal(readFileSync(`${upper}/etc/debian_version`, 'utf8'), 'changed\n');
    // Root's files on the host sit behind directories only root may enter.
    assert.equal(statSync(`${state.dir}/sandboxes/${sandbox.sandboxId}/workspace`).mode & 0o077, 0);
    const layersDir = `${state.dir}/images/layers`;
    for (const layer of readdirSync(layersDir).filter((name) => /^[0-9a-f]{64}$/.test(name))) {
      assert.ok(!existsSync(`${layersDir}/${layer}/usr/bin/planted`));
      if (existsSync(`${layersDir}/${layer}/etc/debian_version`)) assert.notEqual(readFileSync(`${layersDir}/${layer}/etc/debian_version`, 'utf8'), 'changed\n');
    }
    // The overlay is mounted in the namespace runsc (or virtiofsd's view) starts in: the host never sees it.
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(sandbox.sandboxId));
  });

  test('root inside makes no setuid, setgid or device file: refused inside, none on the host', async () => {
    const tries = await sandbox.commands.run(
      'cp /bin/sh /tmp/s; chmod u+s /tmp/s; echo chmod=$?; chmod g+s /tmp/s; echo chmodg=$?; install -m 4755 /bin/sh /root/s2; echo install=$?; mknod /root/dev c 1 3; echo mknod=$?; chmod 755 /tmp/s; echo plain=$?',
      { user: 'root' },
    );
    assert.equal(tries.stdout, 'chmod=1\nchmodg=1\ninstall=1\nmknod=1\nplain=0\n');
    const found = execFileSync('find', [upperOf(sandbox.sandboxId), '-perm', '/6000', '-o', '-type', 'c', '-o', '-type', 'b'], { encoding: 'utf8' });
    assert.equal(found, '', 'no set-id file or device in the upper');
  });

  test(`a snapshot of a ${tier} sandbox boots on either tier with the same owners`, async () => {
    const source = await createOn(daemon, IMAGE, tier);
    try {
      await source.files.write('/home/user/note.txt', 'kept');
      await source.files.write('/root/secret.txt', 'root only', { user: 'root' });
      const { snapshotId } = await source.createSnapshot();
      for (const on of ['jail', tier]) {
        const copy = await createOn(daemon, snapshotId, on);
        try {
          const owners = await copy.commands.run('stat -c "%u:%g %n" /home/user/note.txt /root/secret.txt; cat /home/user/note.txt', { user: 'root' });
          assert.equal(owners.stdout, '1000:1000 /home/user/note.txt\n0:0 /root/secret.txt\nkept', `on ${on}`);
        } finally {
          await copy.kill();
        }
      }
    } finally {
      await source.kill();
    }
  });

  test("an image's link where brig mounts is never followed out of its root: nothing appears on the host (on the jail too)", () => {
    const env = { ...process.env, BRIG_STATE_DIR: state.dir };
    for (const on of [tier, 'jail']) {
      // --allow: the egress bridge's parts are bound under /run/brig on every tier.
      const run = spawnSync(BRIG, ['run', '--image', HOSTILE, '--tier', on, '--allow', 'example.com', '--', 'true'], { env, encoding: 'utf8' });
      assert.deepEqual(readdirSync(escapeDir), [], `nothing made on the host by the ${on} tier: ${run.stderr}`);
      // gVisor makes its mount points inside the sandbox, never following the link out; the others refuse the image.
      if (run.status !== 0) assert.match(run.stderr, /link where brig mounts|has a link at/, run.stderr);
    }
  });

  test(`brig run --image --tier ${tier}: the image's ENV, the exit code, its writes dropped; a workspace of another owner is refused`, () => {
    const env = { ...process.env, BRIG_STATE_DIR: state.dir };
    const project = tempWorkspace(`brig-${tier}-image-project-`);
    try {
      const first = spawnSync(BRIG, ['run', '--image', IMAGE, '--tier', tier, '--workspace', project.dir, '--', 'sh', '-c', 'id -un; echo "$GREETING"; uname -r; touch /home/user/mark; echo made > made; exit 7'], { env, encoding: 'utf8' });
      assert.equal(first.status, 7, first.stderr);
      assert.equal(first.stdout.split('\n').slice(0, 2).join('\n'), 'root\nhi');
      kernel(first.stdout.split('\n')[2] + '\n');
      assert.deepEqual([statSync(`${project.dir}/made`).uid, readFileSync(`${project.dir}/made`, 'utf8')], [0, 'made\n']);
      const second = spawnSync(BRIG, ['run', '--image', IMAGE, '--tier', tier, '--workspace', project.dir, '--', 'sh', '-c', 'test -e /home/user/mark'], { env, encoding: 'utf8' });
      assert.equal(second.status, 1, 'a second run starts from the image again');
      // Neither tier can map the owner's ids onto root inside, as the jail does: it says so.
      chownSync(project.dir, 1000, 1000);
      writeFileSync(`${project.dir}/theirs`, 'x\n');
      const refused = spawnSync(BRIG, ['run', '--image', IMAGE, '--tier', tier, '--workspace', project.dir, '--', 'true'], { env, encoding: 'utf8' });
      assert.equal(refused.status, 125);
      assert.match(refused.stderr, refusal);
      assert.match(refused.stderr, /belongs to 1000:1000/);
    } finally {
      project.remove();
    }
  });
});
}
