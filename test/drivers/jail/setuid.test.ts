import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, type SandboxOpts } from 'e2b';
import { runBrig, tempWorkspace } from '../../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../../helpers/daemon.ts';
import { TEST_TIERS } from '../../helpers/tiers.ts';

// Issue 10, item 2: when the jail keeps host uid 0 (a root-owned workspace),
// `cp /usr/bin/id s; chmod 4755 s` used to leave a setuid-root program in the
// workspace for any host user to run. Every way of setting the bit is tried from
// inside; the host then looks at what was left.
const SETID = 0o6000;
const ATTACK = [
  'cp /usr/bin/id s-chmod; chmod 4755 s-chmod',
  'cp /usr/bin/id s-symbolic; chmod u+s,g+s s-symbolic',
  'cp /usr/bin/id s-setgid; chmod 2755 s-setgid',
  'install -m 4755 /usr/bin/id s-install',
  // open(O_CREAT) with the bit in its mode (perl's sysopen calls openat with it as given).
  'perl -e \'use Fcntl; sysopen(my $f, "s-open", O_CREAT|O_WRONLY, 04755) or die "sysopen: $!\\n"\'',
  'mkdir s-dir; chmod g+s s-dir',
  // A file capability instead of the bit: needs CAP_SETFCAP, which no jail has.
  'cp /usr/bin/id s-caps; setcap cap_setuid+ep s-caps',
  'echo done',
].join('; ');

/** Files under dir whose name starts with s-, with their mode bits. */
function planted(dir: string): Array<{ path: string; mode: number }> {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((path) => /(^|\/)s-[a-z]+$/.test(path))
    .map((path) => ({ path: join(dir, path), mode: lstatSync(join(dir, path)).mode }));
}

function assertNoPrivilege(dir: string): void {
  const files = planted(dir);
  assert.ok(files.length >= 5, `the attack ran: ${files.map((file) => file.path).join(', ')}`);
  for (const file of files) assert.equal(file.mode & SETID, 0, `${file.path} has mode ${file.mode.toString(8)}`);
  const caps = execFileSync('getcap', files.map((file) => file.path), { encoding: 'utf8' });
  assert.equal(caps.trim(), '', 'no file capabilities either');
}

const asRoot = process.getuid?.() === 0;

describe('no jail leaves a file the host would run with privileges', () => {
  for (const { tier, skip } of TEST_TIERS) {
    test(`brig run --tier ${tier} in a root-owned workspace (the sandbox keeps host uid 0)`, { skip: (!asRoot && 'needs root: only then does the sandbox keep host uid 0') || skip }, async () => {
      const workspace = tempWorkspace();
      try {
        assert.equal(statSync(workspace.dir).uid, 0, 'the workspace is root-owned');
        const result = await runBrig(['run', '--tier', tier, '--', '/bin/sh', '-c', `id -u; ${ATTACK}`], { cwd: workspace.dir });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /^0\n/, 'uid 0 inside, host uid 0 outside');
        assert.match(result.stdout, /done/);
        assert.match(result.stderr, /Operation not permitted/);
        assertNoPrivilege(workspace.dir);
      } finally {
        workspace.remove();
      }
    });
  }
});

describe('no daemon sandbox leaves a file the host would run with privileges', () => {
  const API_KEY = 'brig_setuid_key';
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  const opts = (): SandboxOpts => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  before(async () => {
    state = tempWorkspace('brig-setuid-state-');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon.stop();
    state.remove();
  });

  test('as the sandbox user, through the e2b SDK', async () => {
    const sandbox = await Sandbox.create(opts());
    try {
      const result = await sandbox.commands.run(`{ ${ATTACK}; } 2>&1`).catch((error: { stdout?: string }) => error);
      assert.match(String((result as { stdout?: string }).stdout), /done/, 'the attack ran');
      assert.match(String((result as { stdout?: string }).stdout), /Operation not permitted/);
      assertNoPrivilege(state.dir);
    } finally {
      await sandbox.kill();
    }
  });
});
