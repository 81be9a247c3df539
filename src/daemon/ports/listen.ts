import { createServer, type Server, type Socket } from 'node:net';
import { BrigError, outOfDescriptors } from '../../protocol/index.ts';
import type { PortAddress, PortKind } from '../sandboxes/index.ts';
import { formatAddress } from './address.ts';

/**
 * One published port's TCP listener on the host. Binding is the whole
 * check that a port is free: its errors become brig's (a taken port is
 * BRIG_PORT_IN_USE). Each connection is handed over paused, so nothing it
 * sends is read before its handler is ready; how many are held at once is
 * capped, and closing the listener cuts every one of them.
 */

/** Connections held at once per port: each agent connection is a shell in the sandbox, each one descriptors in the daemon. */
export const MAX_CONNECTIONS = 64;

export interface Listener {
  close(): Promise<void>;
}

export async function listen(kind: PortKind, address: PortAddress, onConnection: (socket: Socket) => void): Promise<Listener> {
  const sockets = new Set<Socket>();
  const server = createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A client that resets the connection is no failure of the daemon's.
    socket.on('error', () => socket.destroy());
    onConnection(socket);
  });
  server.maxConnections = MAX_CONNECTIONS;
  await bind(server, kind, address);
  // Later errors are accept(2)'s (the daemon out of descriptors): heard, and the port keeps listening.
  server.on('error', () => {});
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function bind(server: Server, kind: PortKind, address: PortAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(bindError(kind, address, error)));
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
}

function bindError(kind: PortKind, address: PortAddress, error: NodeJS.ErrnoException): BrigError {
  const where = `the ${kind} port ${formatAddress(address)}`;
  if (error.code === 'EADDRINUSE') return new BrigError('BRIG_PORT_IN_USE', `${where} is already in use on this host`, 'pick another port (`ss -ltnp` shows what listens where), or end what holds it');
  if (error.code === 'EACCES') return new BrigError('BRIG_PORT_NOT_ALLOWED', `${where}: the host does not let the daemon listen there (${error.message})`, 'ports below 1024 need a daemon running as root: pick one of 1024 or above');
  if (error.code === 'EADDRNOTAVAIL') return new BrigError('BRIG_BAD_REQUEST', `${where}: ${address.host} is not an address of this host`, 'give an address one of its interfaces has (`ip addr`), or leave the host out for 127.0.0.1');
  if (outOfDescriptors(error)) return new BrigError('BRIG_CAPACITY', `${where}: the daemon is out of file descriptors`, 'try again when fewer connections are open');
  return new BrigError('BRIG_INTERNAL', `${where}: cannot listen: ${error.message}`, 'this is unexpected; the daemon\'s log may say more');
}
