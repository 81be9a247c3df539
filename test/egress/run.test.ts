import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { chmodSync, chownSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { eventually, runBrig, startBrig, tempWorkspace } from '../helpers/brig.ts';
import { TEST_TIERS } from '../helpers/tiers.ts';

const vmSkip = TEST_TIERS.find((entry) => entry.tier === 'vm')?.skip ?? 'no vm tier';

/**
 * `brig run` in allowlist mode, end to end: a real jail with only a loopback,
 * brig-relay inside, the proxy and gateway in the brig process, a stand-in
 * upstream on the host. curl's --noproxy '' undoes NO_PROXY, which exempts
 * loopback (the gateway's address) from the proxy: the stand-in listens on
 * the host's loopback, which the jail can only reach through the proxy.
 */

const SECRET = 'sk-ant-real-secret-0123456789';

/** A process's command line, NUL-separated; '' once it is gone. */
function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

describe('brig run --net allowlist', () => {
  const workspace = tempWorkspace('brig-egress-');
  const state = tempWorkspace('brig-egress-state-');
  const seen: Seen[] = [];
  let upstream: Server;
  let port = 0;
  const env = () => ({ ...process.env, BRIG_STATE_DIR: state.dir, ANTHROPIC_API_KEY: SECRET, BRIG_ANTHROPIC_URL: `http://127.0.0.1:${port}` });
  const brig = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => runBrig(['run', '--workspace', workspace.dir, ...args], { cwd: workspace.dir, env: { ...env(), ...extraEnv } });

  before(async () => {
    upstream = createServer((req, res) => {
      seen.push({ path: req.url ?? '', headers: req.headers });
      req.resume();
      req.on('end', () => {
        if (req.url?.includes('/v1/messages')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: 12, output_tokens: 3 } }));
          return;
        }
        res.end(`upstream says hello to ${req.url}\n`);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    port = (upstream.address() as AddressInfo).port;
  });

  after(() => {
    upstream.close();
    workspace.remove();
    state.remove();
  });

  test('reaches an allowed destination through the proxy, as absolute-form HTTP, CONNECT and SOCKS5', async () => {
    const url = `http://127.0.0.1:${port}/ok`;
    const result = await brig(['--allow', `127.0.0.1:${port}`, '--', 'sh', '-c', `curl -sS --noproxy '' ${url} && curl -sS -p --noproxy '' ${url} && curl -sS --noproxy '' --socks5-hostname 127.0.0.1:3128 ${url}`]);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 0);
    assert.equal(result.stdout, 'upstream says hello to /ok\n'.repeat(3));
  });

  test('as root with a workspace of another user: the jail runs as that user and still reaches its proxy', { skip: process.getuid?.() !== 0 && 'needs root' }, async () => {
    const theirs = tempWorkspace('brig-egress-user-');
    try {
      chownSync(theirs.dir, 1000, 1000);
      const result = await runBrig(['run', '--allow', `127.0.0.1:${port}`, '--', 'sh', '-c', `id -u; curl -sS --noproxy '' http://127.0.0.1:${port}/theirs`], { cwd: theirs.dir, env: env() });
      assert.equal(result.stderr, '');
      assert.equal(result.stdout, `1000\nupstream says hello to /theirs\n`);
    } finally {
      theirs.remove();
    }
  });

  test('refuses what the rules do not allow, and says so when the command ends', async () => {
    const url = `http://127.0.0.1:${port}/no`;
    const result = await brig(['--allow', 'example.com', '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', url]);
    assert.equal(result.stdout, '403');
    assert.match(result.stderr, new RegExp(`brig: 1 access refused:\\n  network 127\\.0\\.0\\.1:${port} — not in allowlist`));
    assert.ok(!seen.some((request) => request.path === '/no'), 'the upstream never saw the refused request');
  });

  test('an allowed name that resolves to loopback is refused (the DNS rebinding guard)', async () => {
    const result = await brig(['--allow', `localhost:${port}`, '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', `http://localhost:${port}/rebind`]);
    assert.equal(result.stdout, '403');
    assert.match(result.stderr, /network localhost:\d+ — .*127\.0\.0\.1/);
  });

  test('the jail has no way out but the proxy: a direct connection finds no network', async () => {
    const result = await brig(['--allow', `127.0.0.1:${port}`, '--', 'sh', '-c', `curl -sS --noproxy '*' --connect-timeout 5 http://192.0.2.1:${port}/ ; echo "curl=$?"`]);
    assert.match(result.stdout, /curl=7\n$/);
  });

  test("Node's own fetch goes through the proxy", async () => {
    const script = `fetch('http://127.0.0.1:${port}/from-node').then((r) => r.text()).then((t) => process.stdout.write(t))`;
    const result = await brig(['--allow', `127.0.0.1:${port}`, '--env', 'NO_PROXY=', '--env', 'no_proxy=', '--', 'node', '-e', script]);
    assert.equal(result.stderr, '');
    assert.equal(result.stdout, 'upstream says hello to /from-node\n');
  });

  test('on the vm tier the guest goes out over its channel to the same proxy: HTTP, CONNECT, SOCKS5 and Node\'s fetch allowed, the rest refused, no direct way', { skip: vmSkip }, async () => {
    const url = `http://127.0.0.1:${port}/vm`;
    const fetchScript = `fetch('http://127.0.0.1:${port}/vm-node').then((r) => r.text()).then((t) => process.stdout.write(t))`;
    const script = [
      `curl -sS --noproxy '' ${url} && curl -sS -p --noproxy '' ${url} && curl -sS --noproxy '' --socks5-hostname 127.0.0.1:3128 ${url}`,
      `NO_PROXY= no_proxy= node -e "${fetchScript}"`,
      `curl -sS -o /dev/null -w '%{http_code}\\n' --noproxy '' http://127.0.0.1:${port + 1}/`,
      `curl -sS --noproxy '*' --connect-timeout 5 ${url} ; echo "direct=$?"`,
    ].join('; ');
    const result = await brig(['--tier', 'vm', '--allow', `127.0.0.1:${port}`, '--', 'sh', '-c', script]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${'upstream says hello to /vm\n'.repeat(3)}upstream says hello to /vm-node\n403\ndirect=7\n`);
    assert.match(result.stderr, new RegExp(`network 127\\.0\\.0\\.1:${port + 1} — not in allowlist`));
  });

  test('the LLM gateway sends the real key upstream; inside there is only the placeholder', async () => {
    const before = seen.length;
    const probe = [
      'curl -sS "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" -d "{\\"model\\":\\"m\\",\\"max_tokens\\":5,\\"messages\\":[]}"',
      'echo',
      `echo "key=$ANTHROPIC_API_KEY"`,
      // Anywhere the jail can look: every process's environment and command line, the files it sees.
      // The secret comes in on stdin, so grep's own command line does not hold it.
      `grep -rqsF -f /dev/stdin /proc/*/environ /proc/*/cmdline /etc /tmp /run "$HOME" . && echo LEAK || echo clean`,
    ].join('; ');
    const result = await runBrig(['run', '--workspace', workspace.dir, '--llm', 'anthropic', '--', 'sh', '-c', probe], { cwd: workspace.dir, env: env(), input: `${SECRET}\n` });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.equal(JSON.parse(lines[0] ?? '').usage.output_tokens, 3);
    assert.equal(lines[1], 'key=brig-placeholder-key-the-gateway-sends-the-real-one');
    assert.equal(lines[2], 'clean');
    const received = seen.slice(before).find((request) => request.path === '/v1/messages');
    assert.equal(received?.headers['x-api-key'], SECRET);
    assert.match(result.stderr, /brig: LLM gateway: 1 request, 12 input and 3 output tokens; transcript (\S+)/);
    const transcripts = readdirSync(`${state.dir}/transcripts`);
    assert.equal(transcripts.length > 0, true);
    const text = readFileSync(`${state.dir}/transcripts/${transcripts[transcripts.length - 1]}`, 'utf8');
    assert.match(text, /"usage":\{"inputTokens":12,"outputTokens":3\}/);
    assert.ok(!text.includes(SECRET), 'the transcript holds no key');
  });

  test('a budget runs out with a 429 in the provider\'s own shape, and is recorded', async () => {
    const call = 'curl -sS -o /dev/null -w "%{http_code} " "$ANTHROPIC_BASE_URL/v1/messages" -H "content-type: application/json" -d "{}"';
    const result = await brig(['--llm', 'anthropic', '--max-requests', '1', '--', 'sh', '-c', `${call}; ${call}`]);
    assert.equal(result.stdout, '200 429 ');
    assert.match(result.stderr, /llm \/anthropic\/v1\/messages — budget: requests/);
  });

  test('keys come from a 0600 file too, and a file open to others is refused with a hint', async () => {
    const keys = `${state.dir}/llm-keys`;
    writeFileSync(keys, `ANTHROPIC_API_KEY=${SECRET}\n`, { mode: 0o644 });
    chmodSync(keys, 0o644);
    const refused = await brig(['--llm', 'anthropic', '--', 'true'], { ANTHROPIC_API_KEY: '' });
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /BRIG_LLM_KEYS/);
    assert.match(refused.stderr, /chmod 600/);
    chmodSync(keys, 0o600);
    const before = seen.length;
    const ok = await brig(['--llm', 'anthropic', '--', 'sh', '-c', 'curl -sS -o /dev/null "$ANTHROPIC_BASE_URL/v1/messages" -d "{}"'], { ANTHROPIC_API_KEY: '' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(seen.slice(before).find((request) => request.path === '/v1/messages')?.headers['x-api-key'], SECRET);
  });

  test('a run killed with SIGKILL leaves its socket directory; the next run removes it', async () => {
    const marker = String(1000 + Math.floor(Math.random() * 1000));
    const child = startBrig(['run', '--workspace', workspace.dir, '--allow', 'example.com', '--', 'sleep', marker], { cwd: workspace.dir, env: env() });
    const runDir = `${state.dir}/run`;
    const running = () => readdirSync('/proc').some((pid) => /^\d+$/.test(pid) && cmdline(pid) === `sleep\0${marker}\0`);
    assert.ok(await eventually(running), 'the jailed command started');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    assert.ok(readdirSync(runDir).some((name) => name.startsWith(`${child.pid}-`)), 'SIGKILL left it');
    const next = await brig(['--allow', 'example.com', '--', 'true']);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(readdirSync(runDir), [], 'swept, and the new run removed its own');
    assert.ok(await eventually(() => !running()), 'the jail died with its brig');
  });

  test('bad rules are refused before anything starts', async () => {
    const result = await brig(['--allow', 'exa mple.com', '--', 'true']);
    assert.equal(result.code, 125);
    assert.match(result.stderr, /BRIG_POLICY_INVALID/);
  });
});
