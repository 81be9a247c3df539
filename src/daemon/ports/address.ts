import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { BrigError } from '../../protocol/index.ts';
import type { PublishScope } from '../../policy/index.ts';
import type { PortAddress, PortKind } from '../sandboxes/index.ts';

/**
 * Where a port is published, as a create asks for it ([HOST:]PORT), and
 * whether the sandbox's policy lets it listen there (network.publish). A
 * published port hands whoever reaches it a shell in the sandbox, so the
 * host is this machine's loopback unless the policy says otherwise.
 */

/** Without a host, a port listens here: only this machine reaches it. */
export const DEFAULT_HOST = '127.0.0.1';

const FORMS = 'give [HOST:]PORT: 4000, 127.0.0.1:4000, localhost:4000 or [::1]:4000 (HOST an IPv4 or IPv6 address of this machine, or localhost; PORT 1 to 65535)';

/** `4000`, `HOST:4000`, `[IPV6]:4000`, or a bare port number; `localhost` is 127.0.0.1. */
export function parsePortAddress(value: unknown, field: string): PortAddress {
  if (typeof value === 'number') return { host: DEFAULT_HOST, port: portNumber(String(value), field, value) };
  if (typeof value !== 'string') throw invalid(field, value, 'is not a string or a port number');
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(value);
  const colon = value.lastIndexOf(':');
  let host: string;
  let port: string;
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2] ?? '';
    if (!isIPv6(host)) throw invalid(field, value, `has ${JSON.stringify(host)} in brackets, which is not an IPv6 address`);
  } else if (colon === -1) {
    host = DEFAULT_HOST;
    port = value;
  } else {
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
    if (host.includes(':')) throw invalid(field, value, 'has an IPv6 address without brackets: write it as [ADDRESS]:PORT');
    if (host === 'localhost') host = DEFAULT_HOST;
    else if (!isIPv4(host)) throw invalid(field, value, `has host ${JSON.stringify(host)}, which is not an IP address (names other than localhost are not resolved: a name could lead anywhere)`);
  }
  return { host, port: portNumber(port, field, value) };
}

function portNumber(text: string, field: string, value: unknown): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw invalid(field, value, `has port ${JSON.stringify(text)}, which is not a number from 1 to 65535`);
  return port;
}

function invalid(field: string, value: unknown, why: string): BrigError {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 100)) : typeof value;
  return new BrigError('BRIG_BAD_REQUEST', `${field} ${shown} ${why}`, FORMS);
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8 and ::1, however written (BlockList also reads 127.x mapped into IPv6 as IPv4). */
export function isLoopback(host: string): boolean {
  return LOOPBACK.check(host, isIPv4(host) ? 'ipv4' : 'ipv6');
}

/** BRIG_PORT_NOT_ALLOWED unless the policy's network.publish lets the port listen there. */
export function checkPublish(kind: PortKind, address: PortAddress, scope: PublishScope | undefined): void {
  const where = `the ${kind} port ${formatAddress(address)}`;
  // A policy kept before the field existed means its default.
  const allowed = scope ?? 'loopback';
  if (allowed === 'none') {
    throw new BrigError('BRIG_PORT_NOT_ALLOWED', `${where}: the sandbox's policy publishes no ports (network.publish: none)`, 'create it with a policy whose network.publish is loopback (the default) or all');
  }
  if (allowed === 'loopback' && !isLoopback(address.host)) {
    throw new BrigError(
      'BRIG_PORT_NOT_ALLOWED',
      `${where}: the sandbox's policy publishes ports on loopback addresses only (network.publish: loopback), and ${address.host} is not one`,
      `publish on 127.0.0.1 (the default: --agent-port ${address.port}), or give the create a policy with network.publish: all — then anyone who reaches ${address.host}:${address.port} gets a shell in the sandbox`,
    );
  }
}

/** 127.0.0.1:4000, [::1]:4000. */
export function formatAddress(address: PortAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
