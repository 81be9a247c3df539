import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { openSqliteStore } from '../../src/daemon/store/index.ts';

const API_KEY = 'brig_test_key';

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/** Where the daemon's store says the gateway connects for this sandbox. */
function recordedSocket(stateDir: string, id: string): string {
  const store = openSqliteStore(`${stateDir}/brig.db`);
  try {
    const path = store.get(id)?.handle?.endpoint.socketPath;
    assert.ok(path, `sandbox ${id} has a handle`);
    return path;
  } finally {
    store.close();
  }
}

describe('brig serve: a sandbox cannot swap the socket the gateway reaches envd through', () => {
  let state: { dir: string; remove: () => void };
  let hostDir: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let hostSocket: Server;
  let hostConnections = 0;
  const hostSocketPath = (): string => `${hostDir.dir}/root-only/host.sock`;

  before(async () => {
    state = tempWorkspace('brig-serve-');
    // A root-only host service, as in the report: a 0600 socket in a 0700 directory, answering anything.
    hostDir = tempWorkspace('brig-host-socket-');
    mkdirSync(`${hostDir.dir}/root-only`, { mode: 0o700 });
    chmodSync(hostDir.dir, 0o755);
    hostSocket = createServer((socket) => {
      hostConnections++;
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nhost answers');
    });
    await new Promise<void>((resolve) => hostSocket.listen(hostSocketPath(), resolve));
    chmodSync(hostSocketPath(), 0o600);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
  });

  after(async () => {
    for (const info of await Sandbox.list(opts(daemon)).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts(daemon)).catch(() => false);
    await daemon.stop();
    hostSocket.close();
    state.remove();
    hostDir.remove();
  });

  test('symlinks to a host socket planted at the old and the new socket path reach nothing; the SDK still reaches envd', async () => {
    const sandbox = await Sandbox.create(opts(daemon));
    const socketPath = recordedSocket(state.dir, sandbox.sandboxId);
    // Before the fix envd listened in <state>/sandboxes/<id>/state/run, bound read-write into the jail.
    const oldPath = `${state.dir}/sandboxes/${sandbox.sandboxId}/state/run/envd.sock`;
    const attack = [oldPath, socketPath]
      .map((path) => `mkdir -p ${dirname(path)} 2>/dev/null; rm -f ${path} 2>/dev/null; ln -sf ${hostSocketPath()} ${path} 2>/dev/null && echo "planted ${path}"`)
      .join('; ');
    await sandbox.commands.run(`${attack}; true`);

    // What the daemon connects to is still the socket it bound, in a directory only it may enter.
    const dir = statSync(dirname(socketPath));
    assert.equal(dir.uid, process.getuid?.());
    assert.equal(dir.mode & 0o777, 0o700, `${dirname(socketPath)} is closed to every other user`);
    assert.equal(lstatSync(socketPath).isSocket(), true, `${socketPath} is a socket, not a symlink`);

    const answer = await sandbox.commands.run('echo still envd');
    assert.equal(answer.stdout, 'still envd\n');
    await sandbox.files.write('/home/user/after.txt', 'written through the gateway');
    assert.equal(await sandbox.files.read('/home/user/after.txt'), 'written through the gateway');
    assert.equal(hostConnections, 0, 'the host socket was never reached');
  });

  test('a command inside does not inherit envd\'s listening socket (it could accept the gateway\'s requests)', async () => {
    const sandbox = await Sandbox.create(opts(daemon));
    const fds = await sandbox.commands.run('for fd in /proc/$$/fd/*; do echo "$fd $(readlink $fd)"; done');
    assert.doesNotMatch(fds.stdout, /socket:/, fds.stdout);
    let seen = '';
    const terminal = await sandbox.pty.create({ cols: 200, rows: 40, onData: (data) => void (seen += Buffer.from(data).toString()) });
    await sandbox.pty.sendInput(terminal.pid, Buffer.from('for fd in /proc/$$/fd/*; do echo "fd $fd $(readlink $fd)"; done; exit\n'));
    await terminal.wait().catch(() => null);
    assert.match(seen, /fd \/proc\/\d+\/fd\/0 \/dev\/pts/, seen);
    assert.doesNotMatch(seen, /socket:/, seen);
  });
});
