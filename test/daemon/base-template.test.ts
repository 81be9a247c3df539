import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { seedBaseImage } from '../helpers/images.ts';

const API_KEY = 'brig_base_key';

/**
 * The done-means on the real base template: `Sandbox.create('base')`
 * (and the SDK's default template) boots from it once `brig serve
 * --build-base` has it, with root through the SDK's user and `user` by default.
 */
describe("the base template through the e2b SDK", { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let output = '';
  const opts = (extra: Partial<SandboxOpts> = {}): SandboxOpts => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...extra }) as SandboxOpts;
  before(async () => {
    state = tempWorkspace('brig-base-');
    seedBaseImage(state.dir);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, args: ['--build-base'] });
    // The build beside the daemon finds every step in the cache (the image is there): it says so and exits.
    await new Promise<void>((resolve, reject) => {
      daemon.process.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (/the base image is built/.test(output)) resolve();
        if (/building the base image failed/.test(output)) reject(new Error(output));
      });
    });
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon?.stop();
    state?.remove();
  });

  test("Sandbox.create('base'): root through user: 'root', user by default with home /home/user, its tools there", async () => {
    const sandbox = await Sandbox.create('base', opts({ timeoutMs: 120_000 }));
    try {
      assert.equal((await sandbox.commands.run('id -u; whoami', { user: 'root' })).stdout, '0\nroot\n');
      assert.equal((await sandbox.commands.run('id -u; whoami; echo "$HOME"; pwd')).stdout, '1000\nuser\n/home/user\n/home/user\n');
      const tools = await sandbox.commands.run('python3 -c "print(6*7)"; node -e "console.log(6*7)"; git --version | cut -d" " -f1; pip --version | cut -d" " -f1; gcc --version | head -c3');
      assert.equal(tools.stdout, '42\n42\ngit\npip\ngcc');
      await sandbox.files.write('/home/user/hello.py', 'print("hi")\n');
      assert.equal((await sandbox.commands.run('stat -c %U /home/user/hello.py; python3 hello.py')).stdout, 'user\nhi\n');
    } finally {
      await sandbox.kill();
    }
  });

  test('as root: npm i -g from the registry, pip install of a wheel, apt-get install from the mirror; the user runs what they installed', { skip: process.env.BRIG_TEST_OFFLINE ? 'BRIG_TEST_OFFLINE' : false }, async () => {
    const sandbox = await Sandbox.create('base', opts({ allowInternetAccess: true, timeoutMs: 600_000 }));
    try {
      const asRoot = (cmd: string) => sandbox.commands.run(cmd, { user: 'root', timeoutMs: 600_000 });
      // A host behind a TLS-inspecting proxy trusts its certificate through NODE_EXTRA_CA_CERTS: the sandbox gets the same bundle.
      const extraCa = process.env.NODE_EXTRA_CA_CERTS;
      if (extraCa) await sandbox.files.write('/tmp/host-ca.crt', readFileSync(extraCa, 'utf8'));
      await asRoot(`${extraCa ? 'NODE_EXTRA_CA_CERTS=/tmp/host-ca.crt ' : ''}npm i -g --silent is-number@7.0.0`);
      assert.equal((await sandbox.commands.run('node -e "console.log(require(\'/usr/local/lib/node_modules/is-number\')(7))"')).stdout, 'true\n');
      // A wheel made on the spot (PyPI is not reachable here): pip installs it system-wide, as on E2B.
      const wheel = [
        'import zipfile',
        "z = zipfile.ZipFile('/tmp/demo-1.0-py3-none-any.whl', 'w')",
        "z.writestr('demo.py', 'def hello(): return 42\\n')",
        "z.writestr('demo-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: demo\\nVersion: 1.0\\n')",
        "z.writestr('demo-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')",
        "z.writestr('demo-1.0.dist-info/RECORD', '')",
        'z.close()',
      ].join('\n');
      await sandbox.files.write('/tmp/make_wheel.py', wheel);
      await asRoot('python3 /tmp/make_wheel.py && pip install --no-index --quiet /tmp/demo-1.0-py3-none-any.whl');
      assert.equal((await sandbox.commands.run('python3 -c "import demo; print(demo.hello())"')).stdout, '42\n');
      await asRoot('apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null');
      assert.equal((await sandbox.commands.run('echo \'{"a":1}\' | jq .a')).stdout, '1\n');
    } finally {
      await sandbox.kill();
    }
  });

  test('the SDK\'s default template is base too', async () => {
    const sandbox = await Sandbox.create(opts({ timeoutMs: 60_000 }));
    try {
      assert.equal((await sandbox.commands.run('whoami', { user: 'root' })).stdout, 'root\n');
    } finally {
      await sandbox.kill();
    }
  });
});
