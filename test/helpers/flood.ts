import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

/**
 * An idle-connection flood, as an attacker runs it, from a process of its
 * own (its own descriptors): as many TCP connections to host:port as that
 * process may open, none of which ever sends a byte; a connection the server
 * closes is opened again. `brig serve` died of this (EMFILE on its next spawn).
 */

export interface Flood {
  /** Connections it holds now. */
  held(): number;
  stop(): Promise<void>;
}

/** Starts the flood; resolves once it has tried `connections` connections. */
export async function startFlood(host: string, port: number, connections: number): Promise<Flood> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), host, String(port), String(connections)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let held = 0;
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      for (const match of output.matchAll(/(ready|held) (\d+)\n/g)) {
        held = Number(match[2]);
        if (match[1] === 'ready') resolve();
      }
      output = output.slice(output.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => reject(new Error(`the flood ended early (${code})`)));
  });
  return {
    held: () => held,
    async stop() {
      child.stdin?.end();
      await exited;
    },
  };
}

function flood(host: string, port: number, target: number): void {
  let held = 0;
  let attempts = 0;
  const open = (): void => {
    attempts++;
    const socket = connect({ host, port });
    let connected = false;
    socket.on('connect', () => {
      connected = true;
      held++;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (connected) held--;
      // Keep the pressure on: what the server closes comes back a moment later.
      setTimeout(open, connected ? 50 : 500).unref();
    });
  };
  // In waves, so more than the kernel's accept queue is tested.
  const wave = (): void => {
    for (let index = 0; index < 500 && attempts < target; index++) open();
    if (attempts < target) return void setTimeout(wave, 5);
    setTimeout(() => process.stdout.write(`ready ${held}\n`), 1000);
  };
  wave();
  setInterval(() => process.stdout.write(`held ${held}\n`), 1000);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) flood(process.argv[2] ?? '127.0.0.1', Number(process.argv[3]), Number(process.argv[4]));
