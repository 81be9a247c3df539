import type { IncomingMessage } from 'node:http';
import { ENVD_PORT } from '../../protocol/index.ts';
import { signedFileRequest } from './signature.ts';

/**
 * Which requests are for a sandbox rather than the control plane, and where
 * in the sandbox they go: its envd, or a server on one of its own ports.
 * A request names a sandbox (and a port) in one of E2B's ways or brig's:
 *   - the `E2b-Sandbox-Id` header, with `E2b-Sandbox-Port` (envd's port when absent):
 *     the SDKs' requests to sandboxUrl;
 *   - the host name `<port>-<sandboxId>.<domain>`: what sandbox.getHost(port) returns,
 *     for browsers (`*.localhost` resolves to loopback in them);
 *   - the path `/sandboxes/{id}/envd/...` or `/sandboxes/{id}/ports/{port}/...`,
 *     for clients that can set neither;
 *   - a signed `/files` URL and nothing else: the SDK builds those on
 *     sandboxUrl without any id, so the sandbox is the one whose token made the signature.
 */

export type SandboxRoute =
  /** envd's API; sandbox null: find it by the URL's signature. */
  | { kind: 'envd'; sandbox: string | null; path: string }
  /** A server of the sandbox's own; `base` is the path prefix the route took off (path form), for redirects and cookies. */
  | { kind: 'port'; sandbox: string; port: number; path: string; base: string; form: 'header' | 'host' | 'path' };

const ENVD_PATH = /^\/sandboxes\/([^/?]+)\/envd(\/[^?]*)?(\?.*)?$/;
const PORT_PATH = /^\/sandboxes\/([^/?]+)\/ports\/(\d{1,5})(\/[^?]*)?(\?.*)?$/;
/** `<port>-<id>.<domain>`: ids and names are lowercase in a host name (names with dots cannot be one). */
const HOST_FORM = /^(\d{1,5})-([a-z0-9][a-z0-9_-]*)\.([^:]+)(?::\d+)?$/;

/** Null leaves the request to the control plane. `domain` is the daemon's sandbox domain (host[:port]). */
export function sandboxRoute(raw: IncomingMessage, domain: string): SandboxRoute | null {
  const url = raw.url ?? '/';
  const named = raw.headers['e2b-sandbox-id'];
  if (typeof named === 'string') {
    const port = raw.headers['e2b-sandbox-port'];
    return port === undefined ? { kind: 'envd', sandbox: named, path: url } : toPort(named, String(port), url, '', 'header');
  }
  const host = HOST_FORM.exec(String(raw.headers.host ?? '').toLowerCase());
  if (host && host[3] === hostName(domain)) return toPort(host[2] ?? '', host[1] ?? '', url, '', 'host');
  const envd = ENVD_PATH.exec(url);
  if (envd) return { kind: 'envd', sandbox: safeDecode(envd[1] ?? ''), path: (envd[2] || '/') + (envd[3] ?? '') };
  const port = PORT_PATH.exec(url);
  if (port) {
    const sandbox = safeDecode(port[1] ?? '');
    return toPort(sandbox, port[2] ?? '', (port[3] ?? '') + (port[4] ?? ''), `/sandboxes/${port[1]}/ports/${port[2]}`, 'path');
  }
  const parsed = URL.canParse(url, 'http://gateway') ? new URL(url, 'http://gateway') : null;
  if (parsed && signedFileRequest(raw.method, parsed) !== null) return { kind: 'envd', sandbox: null, path: url };
  return null;
}

/** envd's own port is envd, however it is named; any other is a port route (an invalid number included: it is refused there, by name). */
function toPort(sandbox: string, port: string, path: string, base: string, form: 'header' | 'host' | 'path'): SandboxRoute {
  if (port === String(ENVD_PORT)) return { kind: 'envd', sandbox, path: path || '/' };
  return { kind: 'port', sandbox, port: /^\d{1,5}$/.test(port) ? Number(port) : Number.NaN, path, base, form };
}

/** The host name of a domain given as host[:port], lowercase. */
export function hostName(domain: string): string {
  return domain.toLowerCase().replace(/:\d+$/, '');
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
