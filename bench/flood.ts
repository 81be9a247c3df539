import { spawn, type ChildProcess } from 'node:child_process';
import type { CommandHandle, Sandbox } from 'e2b';

/** What a flood program says every second (and the last thing it said). */
export interface FloodReport {
  /** Connections open now. */
  open: number;
  /** Connections ever established. */
  opened: number;
  /** Established connections the other side closed (the flood opens another). */
  closedByPeer: number;
  /** Connections the other side answered, by the answer's first line (`HTTP/1.1 503 Service Unavailable`: a cap saying no; `408`: an idle limit). */
  answers: Record<string, number>;
  /** Connect and socket errors by code (EMFILE, ECONNREFUSED, ECONNRESET, ...). */
  errors: Record<string, number>;
}

/**
 * The flood itself, plain JavaScript so that the same program runs on the
 * host (`node -e`) and inside a sandbox (its own node, no tsx there). It holds
 * FLOOD_COUNT connections to FLOOD_TARGET (`host:port`, or a unix socket
 * path) open and idle, sends nothing, replaces every one the other side
 * closes, at most FLOOD_RATE new connections per 100 ms per process, and
 * prints a
 * FloodReport (with FLOOD_TAG) as a JSON line every second.
 */
const FLOOD_PROGRAM = `
const net = require('node:net');
const target = process.env.FLOOD_TARGET;
const wanted = Number(process.env.FLOOD_COUNT);
const rate = Number(process.env.FLOOD_RATE || 100);
const tag = process.env.FLOOD_TAG || '';
const stats = { open: 0, opened: 0, closedByPeer: 0, answers: {}, errors: {} };
let pending = 0;
function connectOne() {
  pending++;
  let established = false;
  let answered = false;
  const colon = target.lastIndexOf(':');
  const socket = target.startsWith('/') ? net.connect(target) : net.connect(Number(target.slice(colon + 1)), target.slice(0, colon));
  socket.on('connect', () => { established = true; pending--; stats.open++; stats.opened++; });
  socket.on('data', (chunk) => {
    if (answered) return;
    answered = true;
    const line = chunk.toString('latin1', 0, 60).split('\\r')[0].split('\\n')[0];
    stats.answers[line] = (stats.answers[line] || 0) + 1;
  });
  socket.on('error', (error) => { const code = error.code || 'other'; stats.errors[code] = (stats.errors[code] || 0) + 1; });
  socket.on('close', () => { if (established) { stats.open--; stats.closedByPeer++; } else pending--; });
}
setInterval(() => { for (let i = 0; i < rate && stats.open + pending < wanted; i++) connectOne(); }, 100);
setInterval(() => process.stdout.write(JSON.stringify({ tag, ...stats }) + '\\n'), 1000);
`;

/** Connections per flood process: under a sandbox's open-files limit (2048 today), and under the host's. */
const PER_SANDBOX_PROCESS = 1800;
const PER_HOST_PROCESS = 8000;

export interface Flood {
  /** The sum of the flood processes' latest reports. */
  report(): FloodReport;
  /** Where it connects (for the report). */
  target: string;
  stop(): Promise<void>;
}

/**
 * Idle TCP connections from child processes on the host, so that the bench's
 * own descriptors are not what runs out: each child holds at most
 * PER_HOST_PROCESS (a container may forbid raising the open-files limit past
 * its hard limit, 20 000 here), after trying to raise its limit.
 */
export function idleFlood(host: string, port: number, count: number, rate: number): Flood {
  const processes = Math.max(1, Math.ceil(count / PER_HOST_PROCESS));
  const each = Math.ceil(count / processes);
  const latest = new Map<string, FloodReport>();
  const children = Array.from({ length: processes }, (_, index) => {
    const child = spawn('bash', ['-c', `ulimit -n ${each + 1024} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" -e "$FLOOD_PROGRAM"`, process.execPath], {
      env: { ...process.env, NODE_OPTIONS: '', FLOOD_PROGRAM, FLOOD_TARGET: `${host}:${port}`, FLOOD_COUNT: String(each), FLOOD_RATE: String(rate), FLOOD_TAG: String(index) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout.on('data', collectReports(latest));
    return child;
  });
  return {
    target: `${host}:${port} from the host, ${processes} processes`,
    report: () => sum(latest),
    stop: async () => void (await Promise.all(children.map(stopChild))),
  };
}

/**
 * Connections from inside an allowlist sandbox straight to its egress proxy's
 * unix socket (brig-relay on 127.0.0.1:3128 caps itself at 1024; the socket
 * does not), spread over enough processes to stay under the jail's
 * open-files limit. Falls back to the relay if no socket is found.
 */
export async function egressFlood(sandbox: Sandbox, count: number, rate: number): Promise<Flood> {
  const processes = Math.max(1, Math.ceil(count / PER_SANDBOX_PROCESS));
  const each = Math.ceil(count / processes);
  const latest = new Map<string, FloodReport>();
  let target = 'unknown';
  const onLine = collectReports(latest, (line) => {
    if (line.startsWith('target ')) target = line.slice('target '.length);
  });
  const script = [
    'sock=$(ls /run/brig/egress/*.sock 2>/dev/null | head -n 1)',
    'export FLOOD_TARGET=${sock:-127.0.0.1:3128}',
    'echo "target $FLOOD_TARGET"',
    `for i in $(seq 1 ${processes}); do FLOOD_TAG=$i node -e "$FLOOD_PROGRAM" & done`,
    'wait',
  ].join('\n');
  const handle: CommandHandle = await sandbox.commands.run(script, {
    background: true,
    envs: { FLOOD_PROGRAM, FLOOD_COUNT: String(each), FLOOD_RATE: String(rate), NODE_OPTIONS: '' },
    onStdout: onLine,
    timeoutMs: 0,
  });
  return {
    get target() {
      return `${target} inside a sandbox, ${processes} processes`;
    },
    report: () => sum(latest),
    async stop() {
      await handle.kill().catch(() => false);
    },
  };
}

/** A stdout listener that keeps each flood process's latest report. */
function collectReports(latest: Map<string, FloodReport>, other?: (line: string) => void): (chunk: string | Buffer) => void {
  let partial = '';
  return (chunk) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) {
        other?.(line);
        continue;
      }
      try {
        const report = JSON.parse(line) as FloodReport & { tag: string };
        latest.set(report.tag, report);
      } catch {
        // A torn line: the next second brings another.
      }
    }
  };
}

function sum(latest: Map<string, FloodReport>): FloodReport {
  const total: FloodReport = { open: 0, opened: 0, closedByPeer: 0, answers: {}, errors: {} };
  for (const report of latest.values()) {
    total.open += report.open;
    total.opened += report.opened;
    total.closedByPeer += report.closedByPeer;
    for (const [line, count] of Object.entries(report.answers)) total.answers[line] = (total.answers[line] ?? 0) + count;
    for (const [code, count] of Object.entries(report.errors)) total.errors[code] = (total.errors[code] ?? 0) + count;
  }
  return total;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}
