import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { startEnvd, type Envd } from '../../src/envd/index.ts';

/**
 * envd's CONNECT, what the daemon carries a sandbox's ports on: a stream to
 * a loopback port with the access token, and nothing else — no token, a
 * target off loopback, a port nothing listens on each get their answer.
 */

const TOKEN = 'tunnel-token';

function connectVia(envd: Envd, target: string, token?: string): Promise<{ status: number; why: string; socket: Duplex }> {
  const [host, port] = envd.address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method: 'CONNECT', path: target, headers: token === undefined ? {} : { 'x-access-token': token } });
    req.once('connect', (answer: IncomingMessage, socket: Duplex) => resolve({ status: answer.statusCode ?? 0, why: String(answer.headers['x-brig-error'] ?? ''), socket }));
    req.on('error', reject);
    req.end();
  });
}

describe('envd: CONNECT to a loopback port', () => {
  let envd: Envd;
  let echo: Server;
  let echoPort: number;
  before(async () => {
    envd = await startEnvd({ listen: '127.0.0.1:0', accessToken: TOKEN });
    echo = createServer((socket: Socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as AddressInfo).port;
  });
  after(async () => {
    await envd.close();
    await new Promise((resolve) => echo.close(resolve));
  });

  test('with the token, bytes pass both ways', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const { status, socket } = await connectVia(envd, `${host}:${echoPort}`, TOKEN);
      assert.equal(status, 200);
      socket.write('ping');
      const [chunk] = (await new Promise((resolve) => socket.once('data', (data: Buffer) => resolve([data])))) as [Buffer];
      assert.equal(chunk.toString(), 'ping');
      socket.destroy();
    }
  });

  test('no token, or a wrong one, is 401', async () => {
    assert.equal((await connectVia(envd, `127.0.0.1:${echoPort}`)).status, 401);
    assert.equal((await connectVia(envd, `127.0.0.1:${echoPort}`, 'wrong')).status, 401);
  });

  test('a target off loopback, or no port, is 400: envd proxies nowhere else', async () => {
    for (const target of ['example.com:80', '10.0.0.1:22', '0.0.0.0:80', '127.0.0.2:80', `127.0.0.1:${echoPort}/x`, '127.0.0.1:0', '127.0.0.1:99999', 'localhost']) {
      const { status } = await connectVia(envd, target, TOKEN);
      assert.equal(status, 400, target);
    }
  });

  test('a port nothing listens on is 502, saying so', async () => {
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const { status, why } = await connectVia(envd, `localhost:${port}`, TOKEN);
    assert.equal(status, 502);
    assert.match(why, new RegExp(`nothing listens on port ${port}`));
  });
});
