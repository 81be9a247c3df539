import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Sandbox ports: `CONNECT 127.0.0.1:PORT` opens a byte stream to a server
 * listening on PORT inside the sandbox, for the daemon to carry HTTP,
 * streams and WebSockets to it. envd does it because envd is the one thing
 * every tier runs inside the sandbox's own network: the jail's namespace,
 * gVisor's netstack, the VM's guest. Only loopback is a target: envd is no
 * proxy to anywhere else the sandbox could reach.
 *
 * Answers: 200 and then the stream; 401 without the access token; 400 for
 * a target that is not a loopback port; 502 when nothing listens there
 * (X-Brig-Error says why, for the daemon's own error).
 */

const TARGET = /^(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})$/;

export function serveTunnel(request: IncomingMessage, client: Duplex, head: Buffer, authorized: boolean): void {
  client.on('error', () => client.destroy());
  if (!authorized) return refuse(client, 401, 'missing or wrong X-Access-Token');
  const match = TARGET.exec(request.url ?? '');
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65_535) return refuse(client, 400, `CONNECT ${JSON.stringify(request.url ?? '')}: only 127.0.0.1:PORT, [::1]:PORT or localhost:PORT`);
  // A server may listen on IPv4 or IPv6 loopback only: localhost tries both, as a browser would.
  const hosts = match[1] === 'localhost' ? ['127.0.0.1', '::1'] : [match[1] === '[::1]' ? '::1' : '127.0.0.1'];
  open(hosts, port, client, head);
}

function open(hosts: string[], port: number, client: Duplex, head: Buffer): void {
  const [host, ...others] = hosts;
  const upstream: Socket = connect({ host, port });
  const failed = (error: NodeJS.ErrnoException): void => {
    upstream.destroy();
    if (others.length > 0 && error.code === 'ECONNREFUSED') return open(others, port, client, head);
    refuse(client, 502, error.code === 'ECONNREFUSED' ? `nothing listens on port ${port}` : `port ${port}: ${error.code ?? error.message}`);
  };
  upstream.once('error', failed);
  upstream.once('connect', () => {
    upstream.off('error', failed);
    upstream.setNoDelay(true);
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
    // A failure ends the other side at once; a clean end only ends it, after what is still buffered for it
    // (destroying it then would cut a large answer's last bytes).
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => (upstream.readableEnded ? client.end() : client.destroy()));
  });
  client.once('close', () => upstream.destroy());
}

function refuse(client: Duplex, status: number, reason: string): void {
  const text = status === 401 ? 'Unauthorized' : status === 400 ? 'Bad Request' : 'Bad Gateway';
  client.end(`HTTP/1.1 ${status} ${text}\r\nX-Brig-Error: ${reason.replace(/[\r\n]/g, ' ')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}
