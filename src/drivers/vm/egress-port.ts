import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { Mux, joinStreams } from '../../protocol/index.ts';

/**
 * The host's end of brig.egress (egress.ts): each stream the guest opens is
 * a connection to the sandbox's proxy socket, as the jail's relay makes one.
 * The guest opens the streams here, so it is held to 256 at once, each
 * buffering at most 256 KiB on the host: 64 MiB whatever it does.
 */
export function serveGuestEgress(port: Duplex, proxySocket: string, onError: (error: Error) => void): Mux {
  const mux = new Mux(port, { role: 'client', initialWindowBytes: 256 * 1024, maxStreams: 256 });
  // A guest that breaks the protocol loses its way out; its command runs on.
  mux.on('error', onError);
  mux.on('stream', (stream) => joinStreams(connect(proxySocket), stream));
  return mux;
}
