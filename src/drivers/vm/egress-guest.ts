// brig-vm-egress (dist/inside/vm-egress.cjs): the guest's end of an
// allowlist sandbox's way out (egress.ts). Started by the init in the second
// layer, as the sandbox's user, with fd 4 a unix socket listening (where the
// command's relay connects) and fd 5 the port brig.egress; each connection
// becomes a stream to the host, which joins it to the sandbox's proxy.
// Node builtins and the mux only: the sandbox sees none of brig's node_modules.
import { createServer } from 'node:net';
import { Mux, fdTransport, joinStreams } from '../../protocol/index.ts';
import { EGRESS_LISTEN_FD, EGRESS_PORT_FD } from './egress.ts';

const mux = new Mux(fdTransport(EGRESS_PORT_FD), { role: 'server', initialWindowBytes: 1 << 20 });
mux.on('error', (error: Error) => process.stderr.write(`brig-vm-egress: the channel broke: ${error.message}\n`));
// Nothing can leave any more: connections are refused, not held.
mux.once('close', () => process.exit(0));
createServer({ allowHalfOpen: true }, (connection) => joinStreams(connection, mux.open())).listen({ fd: EGRESS_LISTEN_FD });
