import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { buildTestImage, seedUserImage } from '../helpers/images.ts';

/**
 * A template's start command (LABEL brig.start) and ready port (LABEL
 * brig.ready-port), in real image sandboxes: the create answers once the
 * port opens, a start that fails is a clear error that leaves nothing
 * running, and E2B's template names map to brig's templates.
 */

const API_KEY = 'template-start-key';
/** Debian's minbase has perl, not python: a server of one answer, opened after a pause so a create that did not wait would find the port shut. */
const SERVER = `use IO::Socket::INET;
select(undef, undef, undef, 0.5);
my $server = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $client = $server->accept) { print $client "HTTP/1.0 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nready"; close $client; }
`;

describe('templates: start command and ready port', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  const state = tempWorkspace('brig-template-start-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;
  const running = async (): Promise<string[]> => (await Sandbox.list(opts()).nextItems()).map((info) => info.sandboxId);

  before(async () => {
    await seedUserImage(state.dir, 'start-base');
    writeFileSync(`${state.dir}/serve.pl`, SERVER);
    await buildTestImage(state.dir, 'starts', 'FROM start-base\nCOPY serve.pl /srv/serve.pl\nLABEL brig.start="perl /srv/serve.pl 7000 >/tmp/start.log 2>&1" brig.ready-port="7000"\nUSER user\n');
    await buildTestImage(state.dir, 'fails', 'FROM start-base\nLABEL brig.start="echo boom >&2; exit 3" brig.ready-port="7000"\n');
    await buildTestImage(state.dir, 'bad-port', 'FROM start-base\nLABEL brig.start="true" brig.ready-port="http"\n');
    // E2B's code interpreter's name for brig's template (a stand-in image of that name here).
    await buildTestImage(state.dir, 'code-interpreter', 'FROM start-base\nLABEL brig.start="perl /srv/serve.pl 49999 >/tmp/start.log 2>&1" brig.ready-port="49999"\nCOPY serve.pl /srv/serve.pl\n');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
  });
  after(async () => {
    for (const id of await running().catch(() => [])) await Sandbox.kill(id, opts()).catch(() => {});
    await daemon.stop();
    state.remove();
  });

  const fetchPort = (sandbox: Sandbox, port: number): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const url = new URL(daemon.url);
      const req = request({ host: url.hostname, port: url.port, path: '/', headers: { host: sandbox.getHost(port), 'e2b-traffic-access-token': sandbox.trafficAccessToken ?? '' } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  test('the create answers once the ready port opens; the start command runs as the sandbox\'s default user, tagged brig-start', async () => {
    const sandbox = await Sandbox.create('starts', opts());
    try {
      const answer = await fetchPort(sandbox, 7000);
      assert.deepEqual(answer, { status: 200, body: 'ready' });
      const started = (await sandbox.commands.list()).find((process) => process.tag === 'brig-start');
      assert.ok(started, 'the start command is listed with its tag');
      assert.equal((await sandbox.commands.run(`stat -c %U /proc/${started.pid}`)).stdout.trim(), 'user');
    } finally {
      await sandbox.kill();
    }
  });

  test('a start command that fails is BRIG_TEMPLATE_NOT_READY with its words, and leaves no sandbox', async () => {
    const before = await running();
    await assert.rejects(Sandbox.create('fails', opts()), (error: Error) => {
      assert.match(error.message, /BRIG_TEMPLATE_NOT_READY|start command failed/);
      assert.match(error.message, /exit status 3/);
      assert.match(error.message, /boom/);
      return true;
    });
    assert.deepEqual(await running(), before);
  });

  test('a ready port that is no port is refused at create', async () => {
    await assert.rejects(Sandbox.create('bad-port', opts()), /brig\.ready-port="http" is not a port number|is not a port number/);
  });

  test("E2B's code-interpreter-v1 is brig's code-interpreter template", async () => {
    const sandbox = await Sandbox.create('code-interpreter-v1', opts());
    try {
      assert.equal((await fetchPort(sandbox, 49999)).body, 'ready');
      const info = await sandbox.getInfo();
      assert.equal(info.templateId, 'code-interpreter-v1');
    } finally {
      await sandbox.kill();
    }
  });
});
