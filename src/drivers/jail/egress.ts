import { BrigError, EGRESS_DIR_INSIDE, EGRESS_PORT, EGRESS_SOCKET_NAME, NODE_DIR_INSIDE, RELAY_INSIDE } from '../../protocol/index.ts';

/**
 * The jail's way out in allowlist mode. The jail has its own network namespace
 * with only a loopback; brig-relay (native/spawn/relay.c) listens on
 * 127.0.0.1:EGRESS_PORT there and carries each connection to the host's unix
 * socket, bound in through its directory (so a daemon that restarts can put a
 * new socket in place). The relay listens before it execs the command, so the
 * command never races it.
 */
export interface EgressBridge {
  /** Host directory where the host side listens on EGRESS_SOCKET_NAME. */
  socketDir: string;
  /** Host directory of the Node preload that makes fetch use the proxy (dist/inside), bound in for NODE_OPTIONS. */
  nodeDir: string;
  /** The host's brig-relay binary (native/spawn/relay.c). */
  relay: string;
}

export function egressBridge(bridge: EgressBridge | undefined): { mounts: string[]; prefix: string[] } {
  if (!bridge) throw new BrigError('BRIG_POLICY_INVALID', 'network mode allowlist needs the egress proxy, and this caller started none', 'use brig run or brig serve, which start it; or choose network mode none or host');
  return {
    mounts: ['--ro-bind', bridge.socketDir, EGRESS_DIR_INSIDE, '--ro-bind', bridge.relay, RELAY_INSIDE, '--ro-bind', bridge.nodeDir, NODE_DIR_INSIDE],
    prefix: [RELAY_INSIDE, `${EGRESS_PORT}=${EGRESS_DIR_INSIDE}/${EGRESS_SOCKET_NAME}`, '--'],
  };
}
