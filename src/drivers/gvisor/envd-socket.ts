import { closeSync, linkSync, lstatSync, rmSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';

/**
 * envd's socket in a gVisor sandbox. A listening socket handed in as a file
 * descriptor cannot accept() inside gVisor (EINVAL, tested on runsc
 * 20221219), so envd listens on a path instead: in a host directory of the
 * sandbox's own, bound writable inside, with runsc's --host-uds=create
 * making the socket a host socket. The caller's endpoint then becomes a hard
 * link to it: link(2) never follows a symbolic link, the caller's directory
 * is never visible inside, and the link is checked to be a socket, so what
 * the daemon connects to is an inode nothing inside can swap.
 */

/** Where envd listens inside; its directory is the host's `envdDir` (socketDir). */
export const ENVD_SOCKET_DIR_INSIDE = '/run/brig/envd-socket';
export const ENVD_SOCKET_NAME = 'envd.sock';

/** The contract says the driver closes the caller's fd; its socket file goes too (the link takes its place). */
export function releaseCallerSocket(socket: { path: string; fd: number }): void {
  closeSync(socket.fd);
  rmSync(socket.path, { force: true });
}

/** Whether envd's socket has appeared in the sandbox's directory (anything there: linkEndpoint checks what it is). */
export function socketAppeared(envdDir: string): boolean {
  try {
    lstatSync(`${envdDir}/${ENVD_SOCKET_NAME}`);
    return true;
  } catch {
    return false;
  }
}

/** Hard-link envd's socket to the caller's endpoint and check that what was linked is a socket. */
export function linkEndpoint(envdDir: string, endpoint: string): void {
  rmSync(endpoint, { force: true });
  try {
    linkSync(`${envdDir}/${ENVD_SOCKET_NAME}`, endpoint);
  } catch (error) {
    throw new BrigError('BRIG_GVISOR_SETUP', `cannot link envd's socket to ${endpoint}: ${(error as Error).message}`, "the sandbox's state directory and its envd socket's directory must be on one filesystem (a hard link cannot cross)");
  }
  if (!lstatSync(endpoint).isSocket()) {
    rmSync(endpoint, { force: true });
    throw new BrigError('BRIG_GVISOR_SETUP', `envd's socket in ${envdDir} is not a socket: something inside the sandbox replaced it`, 'the sandbox is not trusted: it was stopped; create another');
  }
}
