import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { seedUserImage } from '../helpers/images.ts';

/**
 * The attacks of the jail's security tests, run as root inside a sandbox from
 * an image (docs/security.md): root there is root of its own id range only.
 */

const API_KEY = 'brig_image_security_key';
const IMAGE = 'e2b-user';

describe('root inside an image sandbox gains nothing on the host', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  let state: { dir: string; remove: () => void };
  let hostDir: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let sandbox: Sandbox;
  const root = (cmd: string) => sandbox.commands.run(cmd, { user: 'root' }).catch((error: { exitCode?: number; stdout?: string; stderr?: string }) => error);
  before(async () => {
    state = tempWorkspace('brig-image-security-');
    hostDir = tempWorkspace('brig-image-host-');
    // A host directory the policy binds read-write, holding a root-owned file: the sandbox's root is not its owner.
    // Sticky and world-writable, like /tmp: anyone may add a file, only its owner may remove one.
    chmodSync(hostDir.dir, 0o1777);
    writeFileSync(`${hostDir.dir}/host-owned`, 'original\n', { mode: 0o644 });
    mkdirSync(`${hostDir.dir}/sub`, { mode: 0o755 });
    await seedUserImage(state.dir, IMAGE);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    // brig's policy field is not the SDK's: create through the API, then connect the SDK.
    const created = await fetch(`${daemon.url}/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
      body: JSON.stringify({ templateID: IMAGE, timeout: 300, policy: { filesystem: { readWrite: [hostDir.dir] } } }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { sandboxID } = (await created.json()) as { sandboxID: string };
    sandbox = await Sandbox.connect(sandboxID, { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts);
  });
  after(async () => {
    await sandbox?.kill().catch(() => false);
    await daemon?.stop();
    state?.remove();
    hostDir?.remove();
  });

  test('no setuid or setgid file, no device node: refused inside, none left on the host', async () => {
    const tries = await root('cp /bin/sh /tmp/s; chmod u+s /tmp/s; echo chmod=$?; chmod g+s /tmp/s; echo chmodg=$?; install -m 4755 /bin/sh /root/s2; echo install=$?; mknod /root/dev c 1 3; echo mknod=$?');
    assert.equal((tries as { stdout: string }).stdout, 'chmod=1\nchmodg=1\ninstall=1\nmknod=1\n');
    const upper = `${state.dir}/sandboxes/${sandbox.sandboxId}/workspace/upper`;
    const setid = execFileSync('find', [upper, hostDir.dir, '-perm', '/6000', '-o', '-type', 'c', '-o', '-type', 'b'], { encoding: 'utf8' });
    assert.equal(setid, '', 'no set-id file or device anywhere the sandbox wrote');
  });

  test("a host file the policy binds is the host's: root inside is not its owner", async () => {
    const tries = await root(`echo evil > ${hostDir.dir}/host-owned; echo write=$?; chown 0:0 ${hostDir.dir}/sub; echo chown=$?; rm -rf ${hostDir.dir}/sub; echo rm=$?; touch ${hostDir.dir}/new; echo new=$?`);
    assert.equal((tries as { stdout: string }).stdout, 'write=1\nchown=1\nrm=1\nnew=0\n');
    assert.equal(readFileSync(`${hostDir.dir}/host-owned`, 'utf8'), 'original\n');
    assert.ok(statSync(`${hostDir.dir}/sub`).isDirectory());
    // What it may create there is owned by its range, never by a host account.
    assert.ok(statSync(`${hostDir.dir}/new`).uid >= 2 ** 20);
  });

  test('the host kernel stays out of reach: no mount, module, sysctl, nested namespace, ptrace of the host, raw network', async () => {
    const tries = await root([
      'mount -t proc proc /mnt 2>/dev/null; echo mount=$?',
      'echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; echo sysctl=$?',
      'echo b > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?',
      'unshare -U true 2>/dev/null; echo userns=$?',
      'unshare -m true 2>/dev/null; echo mountns=$?',
      'grep -c . /proc/1/cmdline >/dev/null; cat /proc/1/comm',
      'grep NoNewPrivs /proc/self/status | tr -d "\\t"',
      'grep Seccomp: /proc/self/status | tr -d "\\t"',
      'grep CapBnd /proc/self/status | tr -d "\\t"',
    ].join('; '));
    const lines = (tries as { stdout: string }).stdout.split('\n');
    assert.deepEqual(lines.slice(0, 5), ['mount=32', 'sysctl=1', 'sysrq=1', 'userns=1', 'mountns=1']);
    // Its pid 1 is its own (bwrap's init or envd's parent), never the host's init.
    assert.notEqual(lines[5], readFileSync('/proc/1/comm', 'utf8').trim() === 'bwrap' ? 'x' : readFileSync('/proc/1/comm', 'utf8').trim());
    assert.equal(lines[6], 'NoNewPrivs:1');
    assert.equal(lines[7], 'Seccomp:2');
    // Docker's default set and nothing above it: no CAP_SYS_ADMIN (bit 21), CAP_SYS_MODULE (16), CAP_SYS_PTRACE (19), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    const bounding = BigInt(`0x${(lines[8] ?? '').replace('CapBnd:', '')}`);
    for (const bit of [12n, 13n, 16n, 19n, 21n]) assert.equal((bounding >> bit) & 1n, 0n, `capability bit ${bit} is in the bounding set`);
  });
});
