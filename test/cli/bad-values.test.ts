import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBrig } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { createCgroup, type CgroupPlan } from '../../src/drivers/host/cgroup.ts';
import { isBrigError } from '../../src/protocol/index.ts';

/**
 * Issue 10, item 11: values outside what a host can hold, paths that do not
 * exist, and files that are not files. Each gets a 4xx or exit 125 with a code
 * and a hint: never a 500, a wrong hint, a stack trace, a hang, or a byte of a
 * file the error should not show.
 */

const API_KEY = 'bad-values-key';
let dir: string;
let daemon: RunningDaemon;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'brig-bad-values-'));
  // The jail runs as the workspace's owner: make it someone who may read it.
  chmodSync(dir, 0o755);
  daemon = await serveDaemon(join(dir, 'state'), { apiKey: API_KEY });
});

after(async () => {
  await daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

function assertNoStack(output: string): void {
  assert.doesNotMatch(output, /\n\s+at /, output);
  assert.doesNotMatch(output, /internal error|this is a bug/, output);
}

describe('resource values beyond what a host can hold', () => {
  for (const [field, value] of [
    ['memoryMiB', 2 ** 53],
    ['memoryMiB', 2 ** 31],
    ['pids', 1e8],
    ['cpus', 1e6],
    ['maxFileSizeMiB', 2 ** 50],
  ] as const) {
    it(`the daemon answers 400 BRIG_POLICY_INVALID, not 500, for ${field}: ${value}`, async () => {
      const response = await fetch(`${daemon.url}/sandboxes`, {
        method: 'POST',
        headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', policy: { resources: { [field]: value } } }),
      });
      const body = (await response.json()) as { code: string; message: string; hint: string; error_code?: string };
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal(body.error_code ?? body.code, 'BRIG_POLICY_INVALID');
      assert.match(body.message, new RegExp(`resources\\.${field}: must be .*(to|≤) \\d+`));
      assert.doesNotMatch(body.hint, /mount the cgroup controllers/);
    });
  }

  it('brig run refuses --pids 100000000 with exit 125 and the range', async () => {
    const result = await runBrig(['run', '--workspace', dir, '--pids', '100000000', '--', 'true']);
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /resources\.pids: must be an integer from 8 to 4194304.*\[BRIG_POLICY_INVALID\]/);
    assertNoStack(result.stderr);
  });

  it('the largest values the schema allows run (the kernel takes every one)', async () => {
    const result = await runBrig(['run', '--workspace', dir, '--memory', '1073741824m', '--cpus', '8192', '--pids', '4194304', '--', 'echo', 'ran']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'ran\n');
  });

  it('a value the kernel refuses (EINVAL) is BRIG_POLICY_INVALID naming the limit, not the "mount the controllers" hint', () => {
    const home = '/sys/fs/cgroup/pids';
    const cgroup = join(home, `brig-bad-values-${process.pid}`);
    const plan: CgroupPlan = { version: 'v1', dirs: [cgroup], homes: [home], writes: [[`${cgroup}/pids.max`, '-7']], killDir: null, oomFile: '', enable: [] };
    try {
      createCgroup(plan);
      assert.fail('the kernel took pids.max -7');
    } catch (error) {
      assert.ok(isBrigError(error), String(error));
      assert.equal(error.code, 'BRIG_POLICY_INVALID');
      assert.match(error.message, /refuses -7 for the jail's pids\.max \(EINVAL\)/);
      assert.doesNotMatch(error.hint, /mount the cgroup controllers/);
    } finally {
      try {
        rmdirSync(cgroup);
      } catch {
        // createCgroup removed it, as it should.
      }
    }
  });
});

describe('a workspace that does not exist', () => {
  it('brig run --workspace /nonexistent exits 125 with BRIG_PATH_MISSING and no stack trace', async () => {
    const missing = join(dir, 'no-such-dir');
    const result = await runBrig(['run', '--workspace', missing, '--', 'true']);
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, new RegExp(`the workspace ${missing} does not exist on the host \\[BRIG_PATH_MISSING\\]\\n  hint: `));
    assertNoStack(result.stderr);
  });

  it('a file as the workspace is refused the same way', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const result = await runBrig(['run', '--workspace', file, '--', 'true']);
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /is not a directory \[BRIG_PATH_MISSING\]/);
    assertNoStack(result.stderr);
  });
});

describe('policy files that are not plain files', () => {
  it('a FIFO is refused at once, not read forever', async () => {
    const fifo = join(dir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    // Nobody ever opens the write end: before the fix brig blocked in open() for good.
    const result = await runBrig(['run', '--workspace', dir, '--policy', fifo, '--', 'true']);
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /fifo\.json: not a regular file \(a named pipe\) \[BRIG_POLICY_FILE\]/);
  });

  it('a directory and a device are refused by name', async () => {
    const directory = join(dir, 'dir.yaml');
    mkdirSync(directory);
    const asDirectory = await runBrig(['run', '--workspace', dir, '--policy', directory, '--', 'true']);
    assert.equal(asDirectory.code, 125);
    assert.match(asDirectory.stderr, /not a regular file \(a directory\)/);
    const device = join(dir, 'zero.json');
    symlinkSync('/dev/zero', device);
    const asDevice = await runBrig(['run', '--workspace', dir, '--policy', device, '--', 'true']);
    assert.equal(asDevice.code, 125);
    assert.match(asDevice.stderr, /not a regular file \(a device\)/);
  });

  it('a file larger than 1 MiB is refused without being parsed', async () => {
    const large = join(dir, 'large.json');
    writeFileSync(large, `{"name": "${'x'.repeat(1024 * 1024)}"}`);
    const result = await runBrig(['run', '--workspace', dir, '--policy', large, '--', 'true']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /large\.json: larger than 1048576 bytes \[BRIG_POLICY_FILE\]/);
  });

  it('a parse error through a symlink names the place, never a byte of the target', async () => {
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'QZJ-the-secret-token\n');
    const cases: Array<[string, string]> = [
      ['link.json', secret],
      ['link.yaml', secret],
    ];
    writeFileSync(join(dir, 'tag-secret'), 'name: !QZJsecret x\n');
    cases.push(['tag.yaml', join(dir, 'tag-secret')]);
    writeFileSync(join(dir, 'trailing-secret'), '{} QZJ\n');
    cases.push(['trailing.json', join(dir, 'trailing-secret')]);
    for (const [name, target] of cases) {
      const link = join(dir, name);
      symlinkSync(target, link);
      const result = await runBrig(['run', '--workspace', dir, '--policy', link, '--', 'true']);
      assert.equal(result.code, 125, `${name}: ${result.stderr}`);
      assert.match(result.stderr, /\[BRIG_POLICY_(FILE|INVALID)\]/, name);
      // The temporary directory's random name may hold a Q itself: only what follows it counts.
      assert.doesNotMatch(result.stderr.replaceAll(dir, '<dir>'), /Q|ZJ|secret/, `${name} echoed the file: ${result.stderr}`);
    }
  });
});
