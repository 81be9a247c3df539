import { EGRESS_DIR_INSIDE, EGRESS_SOCKET_NAME, INSIDE_DIR, NODE_DIR_INSIDE } from '../../protocol/index.ts';
import { programRuntime } from '../envd-runtime/index.ts';
import type { MountStep, SandboxPlan } from '../plan/index.ts';
import type { ChannelRecord } from './channel.ts';

/**
 * Allowlist egress in a VM, which has no network device: the way out is the
 * jail's (a relay on the command's loopback, port EGRESS_PORT, to a unix
 * socket in EGRESS_DIR_INSIDE) up to that socket, which in the guest is the
 * guest's own: the init listens on it, in a guest tmpfs over the directory,
 * and hands it to brig-vm-egress (egress-guest.ts, dist/inside/vm-egress.cjs,
 * run by the host's Node brought into the view), which carries each
 * connection as a stream over the port brig.egress (protocol/mux.ts). On the
 * host each stream becomes a connection to the sandbox's own proxy socket
 * (egress-port.ts), exactly as the jail's relay makes one: the same rules,
 * gateway, keys (which stay on the host) and ledger.
 */

/** Where the egress program finds its listening socket and brig.egress (native/spawn/vm-init.c). */
export const EGRESS_LISTEN_FD = 4;
export const EGRESS_PORT_FD = 5;
/** The host's Node, its loader and libraries, inside: the guest's root is the host's view, which need not show them. */
const NODE_RUNTIME_INSIDE = `${INSIDE_DIR}/vm-node`;
/** In dist/inside, bound at NODE_DIR_INSIDE for every allowlist sandbox. */
const GUEST_PROGRAM = `${NODE_DIR_INSIDE}/vm-egress.cjs`;

/** What the view adds for egress: the bridge's parts, as the jail binds them, and Node for the guest's end. */
export function egressViewMounts(plan: SandboxPlan): MountStep[] {
  const bridge = plan.network.bridge;
  if (!bridge) return [];
  const binds = [...bridge.mounts.map((mount) => ({ host: mount.source, sandbox: mount.target })), ...programRuntime(NODE_RUNTIME_INSIDE, process.execPath).files];
  return binds.map((file): MountStep => ({ kind: 'bind', source: file.host, target: file.sandbox, writable: false, field: 'network.allowlist' }));
}

/** The init's records for egress: a guest tmpfs over the socket's directory, then the socket and its program. */
export function egressRecords(plan: SandboxPlan, mountFlags: number): ChannelRecord[] {
  if (!plan.network.bridge) return [];
  return [
    ['mount', 'tmpfs', 'tmpfs', EGRESS_DIR_INSIDE, String(mountFlags), 'mode=0755,size=64k'],
    ['egress', `${EGRESS_DIR_INSIDE}/${EGRESS_SOCKET_NAME}`, ...programRuntime(NODE_RUNTIME_INSIDE, process.execPath).argv(GUEST_PROGRAM)],
  ];
}
