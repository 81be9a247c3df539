import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Mux } from '../../../src/protocol/index.ts';
import { serveGuestEgress } from '../../../src/drivers/vm/egress-port.ts';
import { eventually } from '../../helpers/brig.ts';

/**
 * The host's end of brig.egress against a hostile guest, with no VM: the
 * guest's side is a Mux on the other end of a socket. Whatever the guest
 * opens, at most 256 connections reach the proxy; garbage closes the way out
 * with an error, never an exception.
 */

async function portPair(dir: string): Promise<{ host: Socket; guest: Socket; close(): void }> {
  const path = join(dir, 'port.sock');
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const guest = connect(path);
  const host = await accepted;
  return { host, guest, close: () => (host.destroy(), guest.destroy(), server.close()) };
}

test('a guest that opens 300 streams reaches the proxy with 256; the rest are reset', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'brig-egress-port-'));
  const proxied: Socket[] = [];
  const proxy = createServer((socket) => proxied.push(socket));
  await new Promise<void>((resolve) => proxy.listen(join(dir, 'egress.sock'), resolve));
  const pair = await portPair(dir);
  try {
    const errors: Error[] = [];
    serveGuestEgress(pair.host, join(dir, 'egress.sock'), (error) => errors.push(error));
    const guest = new Mux(pair.guest, { role: 'server' });
    let reset = 0;
    for (let i = 0; i < 300; i++) {
      const stream = guest.open();
      stream.on('error', () => reset++);
      stream.write('x');
    }
    assert.ok(await eventually(() => proxied.length === 256 && reset === 44, 1000), `${proxied.length} proxied, ${reset} reset`);
    assert.deepEqual(errors, []);
  } finally {
    for (const socket of proxied) socket.destroy();
    pair.close();
    proxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('garbage from the guest closes its way out with a protocol error, and nothing throws', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'brig-egress-port-'));
  const pair = await portPair(dir);
  try {
    const errors: Error[] = [];
    serveGuestEgress(pair.host, join(dir, 'nothing-listens-here.sock'), (error) => errors.push(error));
    pair.guest.write(Buffer.alloc(64, 0xff));
    assert.ok(await eventually(() => errors.length === 1), 'one error');
    assert.equal((errors[0] as Error & { code?: string }).code, 'BRIG_MUX_PROTOCOL');
  } finally {
    pair.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
