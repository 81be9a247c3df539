import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Sandbox, type SandboxOpts } from 'e2b';
import { appendFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { envdRuntime, toolLibraries } from '../../src/drivers/envd-runtime/index.ts';
import { tempWorkspace } from '../helpers/brig.ts';
import { ENVD } from '../helpers/envd.ts';

/**
 * envd in a sandbox whose root is not the host's: an empty bubblewrap root
 * holding only the runtime closure (node, its libraries, the loader, envd,
 * node-pty). No /usr, no /lib, no shell: what a container image or a
 * microVM without Node would offer.
 */
describe('envd on a foreign root filesystem', () => {
  let jail: ChildProcess;
  let url: string;

  before(async () => {
    const runtime = envdRuntime({ envdBundle: ENVD });
    const binds = runtime.files.flatMap((file) => ['--ro-bind', file.host, file.sandbox]);
    jail = spawn('bwrap', ['--unshare-all', '--share-net', '--die-with-parent', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--setenv', 'HOME', '/tmp', ...binds, '--', ...runtime.argv('127.0.0.1:0')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {},
    });
    let stderr = '';
    jail.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    url = await new Promise<string>((resolve, reject) => {
      let stdout = '';
      jail.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /envd listening on (\S+)/.exec(stdout);
        if (match?.[1]) resolve(`http://${match[1]}`);
      });
      jail.once('exit', (code) => reject(new Error(`envd exited (${code}): ${stderr}`)));
    });
  });

  after(async () => {
    const exited = new Promise((resolve) => jail.once('exit', resolve));
    jail.kill('SIGTERM');
    await exited;
  });

  test('envd starts there and serves the e2b SDK', async () => {
    const sandbox = await Sandbox.create({ debug: true, sandboxUrl: url, apiKey: 'test' } as SandboxOpts);
    const root = (await sandbox.files.list('/')).map((entry) => entry.name).sort();
    assert.deepEqual(root, ['dev', 'opt', 'proc', 'tmp'], 'nothing of the host root is there');
    await sandbox.files.write('/tmp/hello.txt', 'from a foreign root');
    assert.equal(await sandbox.files.read('/tmp/hello.txt'), 'from a foreign root');
  });

  test('a command that does not exist in that root fails cleanly', async () => {
    const sandbox = await Sandbox.create({ debug: true, sandboxUrl: url, apiKey: 'test' } as SandboxOpts);
    await assert.rejects(sandbox.commands.run('true'));
    assert.equal((await fetch(`${url}/health`)).status, 204, 'envd still serves');
  });
});

describe("ldd's answers", () => {
  test('are reused for the same binary, and asked again once the binary changes', () => {
    const scratch = tempWorkspace('brig-ldd-');
    const path = process.env.PATH;
    try {
      const binary = `${scratch.dir}/true`;
      copyFileSync('/bin/true', binary);
      const first = toolLibraries(binary);
      assert.ok(first.some((library) => /\/libc[.-]/.test(library)), `ldd lists libc: ${first.join(' ')}`);
      // With no ldd to run, only a remembered answer can come back.
      mkdirSync(`${scratch.dir}/empty`);
      process.env.PATH = `${scratch.dir}/empty`;
      assert.deepEqual(toolLibraries(binary), first);
      // The binary replaced (as an upgrade does): ldd is asked again, and cannot be run here.
      appendFileSync(binary, '\0');
      assert.deepEqual(toolLibraries(binary), []);
    } finally {
      process.env.PATH = path;
      scratch.remove();
    }
  });
});
