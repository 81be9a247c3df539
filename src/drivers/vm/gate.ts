import { closeSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { Mux, joinStreams } from '../../protocol/index.ts';
import { RecordReader } from './channel.ts';
import { serveGuestEgress } from './egress-port.ts';
import { GuestWatchdog } from './heartbeat.ts';

/**
 * brig-vm-gate (dist/vm-gate.cjs): the host side of a daemon sandbox's VM,
 * one small process beside QEMU in the sandbox's cgroups, so the sandbox
 * outlives the daemon that booted it as a jail does. It
 *   - sends the guest's init its config on brig.ctl and logs what comes back
 *     (an `exit` or `error` record: envd ended, the VM powers off);
 *   - serves envd's endpoint, the unix socket the daemon bound: each
 *     connection becomes a stream over brig.service, where envd (`--listen
 *     mux:N`) takes it as a connection of its own (protocol/mux.ts);
 *   - in allowlist mode, joins each stream the guest opens on brig.egress
 *     to the sandbox's proxy socket (egress.ts);
 *   - watches the init's heartbeat, and ends when it stops (heartbeat.ts):
 *     the daemon then finds the sandbox gone (vmLiveness), kills the VM and
 *     records this process's last line as the reason (vmWhyGone).
 * Its fds: 3 the endpoint, 4 brig.ctl's socket, 5 brig.service's (each
 * listening; QEMU connects once to each), 6 the config records (a file
 * already unlinked: it carries envd's access token), in allowlist mode 7
 * brig.egress's; its arguments: how long the guest may be silent (ms), then
 * in allowlist mode the proxy socket's path; its program comes on stdin. It needs nothing else, so it runs as nobody, or in
 * allowlist mode as the sandbox's host owner, the one uid the proxy socket
 * lets in. It ends when QEMU hangs up either port; the guest's
 * records and its own errors go to stderr (vm/host.log).
 */

export const CHANNEL_CLOSED = 'QEMU closed the channel';

const ENDPOINT_FD = 3;
const CTL_FD = 4;
const SERVICE_FD = 5;
const CONFIG_FD = 6;
const EGRESS_FD = 7;
const MAX_LOGGED_RECORDS = 100;

export async function main(): Promise<void> {
  const config = readFileSync(CONFIG_FD);
  closeSync(CONFIG_FD);
  const ended = (why: string): never => {
    log(`brig-vm-gate: ${why}; ending`);
    process.exit(0);
  };
  const silenceMs = Number(process.argv[2]);
  const proxySocket = process.argv[3];
  const watchdog = new GuestWatchdog(silenceMs, ended);
  const [ctl, service, egress] = await Promise.all([acceptOnce(CTL_FD), acceptOnce(SERVICE_FD), proxySocket ? acceptOnce(EGRESS_FD) : null]);
  ctl.write(config);
  const reader = new RecordReader();
  // The guest is hostile: a flood of records must not fill the host's disk with envd.log.
  let logged = 0;
  ctl.on('data', (chunk: Buffer) => {
    try {
      for (const [type, ...fields] of reader.push(chunk)) {
        if (type === 'alive' && fields.length === 0) watchdog.heard();
        else if (logged++ < MAX_LOGGED_RECORDS) log(`brig-vm-gate: the guest's init says: ${type} ${fields.join(' ').slice(0, 500)}`);
      }
    } catch (error) {
      ended(`a bad record on brig.ctl: ${(error as Error).message}`);
    }
  });
  if (egress && proxySocket) serveGuestEgress(egress, proxySocket, (error) => log(`brig-vm-gate: brig.egress broke and is closed (the guest's way out): ${error.message}`));
  for (const port of [ctl, service]) {
    port.on('error', () => {});
    port.once('close', () => ended(CHANNEL_CLOSED));
  }
  // What the guest may send ahead on each stream, held here: 1 MiB a stream, and only the host's connections open streams.
  const mux = new Mux(service, { role: 'client', initialWindowBytes: 1 << 20 });
  mux.on('error', (error: Error) => ended(`brig.service: ${error.message}`));
  const endpoint = createServer({ allowHalfOpen: true }, (client) => {
    joinStreams(client, mux.open());
  });
  endpoint.on('error', (error) => ended(`the endpoint: ${error.message}`));
  endpoint.listen({ fd: ENDPOINT_FD });
}

/** The first connection on an inherited listening socket; then it stops listening. */
function acceptOnce(fd: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
      server.close();
      resolve(socket);
    });
    server.once('error', reject);
    server.listen({ fd });
  });
}

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}
