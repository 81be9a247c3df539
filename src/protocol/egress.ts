/**
 * Where a sandbox in allowlist mode finds its way out, the same in every tier:
 * a proxy port on the sandbox's own loopback, relayed to a unix socket the
 * host listens on (one per sandbox, so the host knows who is calling). The
 * egress room serves the socket; a driver makes it reachable inside.
 */

/** The loopback port inside the sandbox: HTTP proxy, SOCKS5 and the LLM gateway share it. */
export const EGRESS_PORT = 3128;
/** The socket's name in the host directory the driver is given. */
export const EGRESS_SOCKET_NAME = 'egress.sock';
/** Where brig's own files appear inside a jail: the egress directory, the relay, the Node preload. */
export const INSIDE_DIR = '/run/brig';
export const EGRESS_DIR_INSIDE = `${INSIDE_DIR}/egress`;
export const RELAY_INSIDE = `${INSIDE_DIR}/relay`;
/** brig's files for Node programs in the jail (dist/inside): the preload that makes fetch honour HTTP_PROXY, and undici. */
export const NODE_DIR_INSIDE = `${INSIDE_DIR}/node`;
export const NODE_PRELOAD_INSIDE = `${NODE_DIR_INSIDE}/node-proxy.cjs`;
