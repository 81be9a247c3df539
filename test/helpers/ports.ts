import { connect, createServer, type Socket } from 'node:net';

/**
 * TCP clients of a sandbox's published ports, and free ports to publish on.
 * Waits are on what arrives, never on the clock.
 */

/** A port nothing listens on now: bound, then let go (a create may still lose it to someone else: it says BRIG_PORT_IN_USE then). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 1;
}

/** One connection: what came back so far, waits for text to arrive or for the other side to close. */
export class Conversation {
  readonly socket: Socket;
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private readonly waiters = new Set<() => void>();
  /** True once the other side ended the connection (or it broke). */
  ended = false;
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      // Kept as they come (a flood is not copied again at each chunk); joined when read.
      this.chunks.push(chunk);
      this.length += chunk.length;
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, host, () => {
        socket.off('error', reject);
        resolve(new Conversation(socket));
      });
      socket.once('error', reject);
    });
  }

  get bytes(): number {
    return this.length;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString();
  }

  /** Resolves when what arrived matches, or rejects when the connection ended without it. */
  async until(pattern: RegExp | string): Promise<string> {
    const matches = (): boolean => (typeof pattern === 'string' ? this.text().includes(pattern) : pattern.test(this.text()));
    while (!matches()) {
      if (this.ended) throw new Error(`the connection ended before ${String(pattern)} came; it sent ${JSON.stringify(this.text().slice(-2000))}`);
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
    return this.text();
  }

  /** Resolves once anything at all has arrived. */
  async first(): Promise<void> {
    while (this.length === 0 && !this.ended) await new Promise<void>((resolve) => this.waiters.add(resolve));
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  private wake(): void {
    for (const waiter of this.waiters) waiter();
    this.waiters.clear();
  }
}

/** Whether anything accepts connections there now. */
export function listening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
