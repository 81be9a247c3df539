import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { DEFAULT_POLICY } from '../../src/policy/index.ts';
import { MAX_SANDBOX_CONNECTIONS } from '../../src/egress/proxy.ts';
import { startSandboxEgress, type SandboxEgress, type Violation } from '../../src/egress/index.ts';
import { eventually, tempWorkspace } from '../helpers/brig.ts';

/**
 * Issue 10, item 6 (the egress socket's part): one sandbox could hold about
 * 1,000–2,000 of the daemon's descriptors through its proxy socket. A
 * sandbox's proxy now serves at most MAX_SANDBOX_CONNECTIONS at once; the
 * next is answered 503 and closed, the flood is recorded once, and a freed
 * slot serves again. The sandbox's side is played by raw unix sockets on the
 * real egress socket, as the relay in a jail would connect.
 */

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** Resolves with what the server sent once it closes the connection; never for one it keeps open. */
function closedWith(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.once('close', () => resolve(text));
  });
}

describe('a sandbox\'s egress proxy caps its connections', () => {
  const dir = tempWorkspace('brig-proxy-limits-');
  const violations: Violation[] = [];
  let egress: SandboxEgress;
  const clients: Socket[] = [];

  before(async () => {
    egress = await startSandboxEgress({
      sandbox: 'limits',
      dir: join(dir.dir, 'egress'),
      owner: null,
      network: () => ({ ...DEFAULT_POLICY.network, mode: 'allowlist', allow: ['example.com'] }),
      gateway: null,
      ledger: { violation: (violation) => violations.push(violation), spent: () => ({ requests: 0, inputTokens: 0, outputTokens: 0 }), charge: () => {}, transcript: () => {} },
    });
  });
  after(async () => {
    for (const client of clients) client.destroy();
    await egress.close();
    dir.remove();
  });

  const open = async (): Promise<Socket> => {
    const socket = connect(egress.socketPath);
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    clients.push(socket);
    return socket;
  };

  test(`the ${MAX_SANDBOX_CONNECTIONS + 1}th connection gets 503 and is closed; the host holds no more than the cap`, async () => {
    const before = openFds();
    const held: Socket[] = [];
    for (let index = 0; index < MAX_SANDBOX_CONNECTIONS; index++) held.push(await open());
    const extra = 40;
    const refused = await Promise.all(Array.from({ length: extra }, async () => closedWith(await open())));
    for (const answer of refused) assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n[^]*already has 256 connections open through its proxy/);
    // Our own sockets are MAX + extra, the extra ones closed; the proxy's side of each held one is one more each.
    const hostSide = openFds() - before - MAX_SANDBOX_CONNECTIONS;
    assert.ok(hostSide <= MAX_SANDBOX_CONNECTIONS + 8, `the proxy holds ${hostSide} descriptors`);
    assert.equal(violations.filter((violation) => /connections open at once/.test(violation.rule)).length, 1, 'one record for the whole flood');

    // A slot freed serves again: the next connection gets an answer to its request, not a 503.
    const gone = held.pop();
    gone?.destroy();
    assert.ok(await eventually(() => gone?.closed === true));
    let answer = '';
    for (let attempt = 0; attempt < 100; attempt++) {
      const next = await open();
      const done = closedWith(next);
      next.write('CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n');
      answer = await done;
      // The proxy may not have seen the freed socket close yet: then this one was over the cap, and is retried.
      if (!answer.startsWith('HTTP/1.1 503')) break;
    }
    assert.match(answer, /^HTTP\/1\.1 403 /);
    for (const socket of held) socket.destroy();
  });
});
