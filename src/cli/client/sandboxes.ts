import { BrigError } from '../../protocol/index.ts';
import type { Daemon } from './connection.ts';

/** A sandbox as GET /v1/sandboxes lists it. */
export interface ListedSandbox {
  id: string;
  name: string | null;
  state: 'creating' | 'running' | 'stopped';
  templateId: string;
  /** The isolation tier it runs in. */
  tier: string;
  metadata: Record<string, string>;
  /** RFC 3339. */
  startedAt: string;
  /** RFC 3339: when its timeout kills it (for a stopped one: when it was due to). */
  endAt: string;
  /** The host directory mounted at /home/user. */
  workspace: string;
  /** Why it stopped when nobody stopped it; null otherwise. */
  endReason: string | null;
  /** Its ports published on the host; empty once stopped (a daemon before ports leaves it out). */
  ports?: ListedPort[];
}

export interface ListedPort {
  kind: 'agent' | 'monitor';
  host: string;
  port: number;
  listening: boolean;
  /** Why it does not listen. */
  error?: string;
}

/** "agent 127.0.0.1:4000": an IPv6 host in brackets, a port that does not listen marked. */
export function portText(port: ListedPort): string {
  const address = port.host.includes(':') ? `[${port.host}]:${port.port}` : `${port.host}:${port.port}`;
  return `${port.kind} ${address}${port.listening ? '' : ` (not listening${port.error ? `: ${port.error}` : ''})`}`;
}

/** Running sandboxes, oldest first; stopped ones too with `all` (their workspaces were kept). */
export function listSandboxes(daemon: Daemon, all: boolean): Promise<ListedSandbox[]> {
  return daemon.call<ListedSandbox[]>('GET', `/v1/sandboxes${all ? '?all=true' : ''}`);
}

/** By id or name, stopped ones included; a running sandbox wins a name shared with stopped ones. */
export async function findSandbox(daemon: Daemon, idOrName: string): Promise<ListedSandbox> {
  const all = await listSandboxes(daemon, true);
  const byId = all.find((sandbox) => sandbox.id === idOrName);
  if (byId) return byId;
  const named = all.filter((sandbox) => sandbox.name === idOrName);
  const live = named.find((sandbox) => sandbox.state !== 'stopped');
  if (live) return live;
  if (named.length === 1 && named[0]) return named[0];
  if (named.length > 1) throw new BrigError('BRIG_USAGE', `${named.length} stopped sandboxes are named '${idOrName}': ${named.map((sandbox) => sandbox.id).join(', ')}`, 'name one by its id');
  throw new BrigError('BRIG_SANDBOX_NOT_FOUND', `no sandbox '${idOrName}'`, 'list them with `brig ls --all`');
}
