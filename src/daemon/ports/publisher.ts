import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Policy } from '../../policy/index.ts';
import { EnvdClient, type EnvdEndpoint, type PortKind, type PortStatus, type PublishedPorts, type SandboxPorts } from '../sandboxes/index.ts';
import type { CommandRecorder } from '../timeline/index.ts';
import { checkPublish } from './address.ts';
import { AGENT_TAG_PREFIX, serveAgentConnection, type AgentSession } from './agent-port.ts';
import { listen, type Listener } from './listen.ts';
import { MonitorShell, serveMonitorConnection } from './monitor.ts';
import { SHELL_USER } from './shell.ts';

/**
 * Every sandbox's published ports, as the manager drives them (the
 * SandboxPorts contract): listeners bound before the sandbox boots,
 * connections served once it runs, everything closed when it ends. One
 * per daemon.
 */

export interface PortPublisherOptions {
  /** Where the shells behind the ports are recorded (their argv, output, input, end); none by default. */
  recorder?: CommandRecorder;
}

/** One sandbox's ports. */
interface Published {
  ports: PublishedPorts;
  listeners: Map<PortKind, Listener>;
  /** Why a port is not listening (a restarted daemon found it taken). */
  errors: Map<PortKind, string>;
  /** Set by serve: until then connections wait. */
  envd: (() => EnvdClient) | null;
  waiting: Array<() => void>;
  monitor: MonitorShell | null;
  sessions: Set<AgentSession>;
}

const KINDS: PortKind[] = ['agent', 'monitor'];

export class PortPublisher implements SandboxPorts {
  private readonly sandboxes = new Map<string, Published>();
  /** This daemon's agent-port shells are tagged with this: any other agent-port tag in a sandbox is an earlier daemon's. */
  private readonly agentTags = `${AGENT_TAG_PREFIX}${randomUUID().slice(0, 8)}-`;

  constructor(private readonly options: PortPublisherOptions = {}) {}

  async open(id: string, ports: PublishedPorts, policy: Policy): Promise<void> {
    for (const kind of KINDS) {
      const address = ports[kind];
      if (address) checkPublish(kind, address, policy.network.publish);
    }
    const published = this.entry(id, ports);
    try {
      for (const kind of KINDS) {
        const address = ports[kind];
        if (address) published.listeners.set(kind, await listen(kind, address, (socket) => this.connected(published, id, kind, socket)));
      }
    } catch (error) {
      await this.close(id);
      throw error;
    }
  }

  serve(id: string, endpoint: () => EnvdEndpoint): void {
    const published = this.sandboxes.get(id);
    if (!published) return;
    // Each use asks again: a sandbox that ended meanwhile throws, and its socket is checked as the gateway checks it.
    published.envd = () => new EnvdClient(endpoint(), { errorCode: 'BRIG_SANDBOX_NOT_FOUND', user: SHELL_USER });
    if (published.ports.monitor) {
      published.monitor = new MonitorShell({ sandbox: id, envd: published.envd, recorder: this.options.recorder });
      // Started now, so `brig attach` finds it before anyone typed into it; a failure is tried again at the first line.
      void published.monitor.ensure().catch(() => {});
    }
    for (const wake of published.waiting.splice(0)) wake();
  }

  async reopen(id: string, ports: PublishedPorts, policy: Policy, endpoint: () => EnvdEndpoint): Promise<void> {
    const published = this.entry(id, ports);
    for (const kind of KINDS) {
      const address = ports[kind];
      if (!address) continue;
      try {
        checkPublish(kind, address, policy.network.publish);
        published.listeners.set(kind, await listen(kind, address, (socket) => this.connected(published, id, kind, socket)));
      } catch (error) {
        published.errors.set(kind, (error as Error).message);
      }
    }
    this.serve(id, endpoint);
    // The shells of agent-port connections died with the daemon that held them: theirs end too.
    if (ports.agent) void this.killOrphans(published).catch(() => {});
  }

  async close(id: string): Promise<void> {
    const published = this.sandboxes.get(id);
    if (!published) return;
    this.sandboxes.delete(id);
    published.monitor?.close();
    for (const session of published.sessions) session.close();
    published.waiting.splice(0);
    await Promise.all([...published.listeners.values()].map((listener) => listener.close()));
  }

  status(id: string): PortStatus[] {
    const published = this.sandboxes.get(id);
    if (!published) return [];
    return KINDS.flatMap((kind) => {
      const address = published.ports[kind];
      if (!address) return [];
      const error = published.errors.get(kind);
      return [{ kind, ...address, listening: published.listeners.has(kind), ...(error ? { error } : {}) }];
    });
  }

  /** The daemon closes: every port stops listening and every agent-port shell is killed; monitor shells run on, for the next daemon to follow. */
  async shutdown(): Promise<void> {
    await Promise.all([...this.sandboxes.keys()].map((id) => this.close(id)));
  }

  private entry(id: string, ports: PublishedPorts): Published {
    const published: Published = { ports, listeners: new Map(), errors: new Map(), envd: null, waiting: [], monitor: null, sessions: new Set() };
    this.sandboxes.set(id, published);
    return published;
  }

  private connected(published: Published, id: string, kind: PortKind, socket: Socket): void {
    if (this.sandboxes.get(id) !== published) return void socket.destroy();
    if (published.envd === null) {
      // The sandbox is still booting: the connection waits (paused) for it.
      const forget = (): void => {
        const index = published.waiting.indexOf(wake);
        if (index !== -1) published.waiting.splice(index, 1);
      };
      const wake = (): void => {
        socket.off('close', forget);
        this.connected(published, id, kind, socket);
      };
      published.waiting.push(wake);
      socket.once('close', forget);
      return;
    }
    if (socket.destroyed) return;
    let envd: EnvdClient;
    try {
      envd = published.envd();
    } catch {
      return void socket.destroy();
    }
    if (kind === 'monitor' && published.monitor) {
      // An exited monitor shell is started again by the next connection, lines or none.
      void published.monitor.ensure().catch(() => {});
      return serveMonitorConnection(socket, published.monitor);
    }
    const session = serveAgentConnection(socket, { sandbox: id, envd, tag: `${this.agentTags}${randomUUID()}`, recorder: this.options.recorder });
    published.sessions.add(session);
    socket.once('close', () => published.sessions.delete(session));
  }

  private async killOrphans(published: Published): Promise<void> {
    const envd = published.envd?.();
    if (!envd) return;
    for (const process of await envd.list()) {
      if (process.tag?.startsWith(AGENT_TAG_PREFIX) && !process.tag.startsWith(this.agentTags)) await envd.sendSignal({ pid: process.pid }, 'SIGNAL_SIGKILL').catch(() => {});
    }
  }
}
