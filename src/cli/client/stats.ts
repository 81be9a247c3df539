import { setTimeout as sleep } from 'node:timers/promises';
import { BrigError, isBrigError } from '../../protocol/index.ts';
import { segment, type Daemon } from './connection.ts';
import { bytes, json, parseMixed, table } from './output.ts';
import { listSandboxes } from './sandboxes.ts';

export const STATS_HELP = `Usage: brig stats [--json] [NAME]

What running sandboxes use now (one, or all of them): CPU when the daemon
reports it, memory against its limit (page cache and tmpfs included), tasks
alive, and the size of its workspace on disk.

  --json   the same, as a JSON array (bytes as numbers)`;

const FLAGS = { json: { value: false }, help: { value: false, short: 'h' } };

/** What GET /v1/sandboxes/:id/stats answers; cpuUsec (cumulative CPU time) only from daemons that measure it. */
interface Usage {
  memoryBytes: number;
  pids: number;
  diskBytes: number;
  cpuUsec?: number;
}

/** E2B's detail of a running sandbox: the memory limit is its memoryMB. */
interface Detail {
  sandboxID: string;
  name?: string | null;
  memoryMB: number;
}

interface Row {
  id: string;
  name: string | null;
  /** Percent of one CPU over the sampling second; null when the daemon does not report CPU time. */
  cpuPercent: number | null;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  diskBytes: number;
}

/** CPU is a rate: two samples this far apart. */
const CPU_SAMPLE_MS = 1000;

export async function stats(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig stats');
  if (parsed.operands.length > 1) throw new BrigError('BRIG_USAGE', 'brig stats takes one sandbox, or none for all', 'see `brig stats --help`');
  const named = parsed.operands[0];
  const targets = named === undefined ? (await listSandboxes(daemon, false)).filter((sandbox) => sandbox.state === 'running').map((sandbox) => sandbox.id) : [named];

  // Listed, then measured: one that ends in between is left out, unless it was named.
  const gone = (error: unknown): null => {
    if (named === undefined && isBrigError(error) && error.code === 'BRIG_SANDBOX_NOT_FOUND') return null;
    throw error;
  };
  const sample = (ids: string[]): Promise<(Usage | null)[]> => Promise.all(ids.map((id) => daemon.call<Usage>('GET', `/v1/sandboxes/${segment(id)}/stats`).catch(gone)));
  const details = (await Promise.all(targets.map((id) => daemon.call<Detail>('GET', `/sandboxes/${segment(id)}`).catch(gone)))).filter((detail): detail is Detail => detail !== null);
  const ids = details.map((detail) => detail.sandboxID);
  const first = await sample(ids);
  const started = Date.now();
  let second: (Usage | null)[] | null = null;
  if (first.some((usage) => typeof usage?.cpuUsec === 'number')) {
    await sleep(CPU_SAMPLE_MS);
    second = await sample(ids);
  }
  const elapsedUsec = (Date.now() - started) * 1000;
  const rows: Row[] = [];
  details.forEach((detail, index) => {
    const now = second?.[index] ?? first[index];
    if (!now) return;
    const before = first[index]?.cpuUsec;
    const after = second?.[index]?.cpuUsec;
    rows.push({
      id: detail.sandboxID,
      name: detail.name ?? null,
      cpuPercent: typeof before === 'number' && typeof after === 'number' && elapsedUsec > 0 ? Math.round(((after - before) / elapsedUsec) * 1000) / 10 : null,
      memoryBytes: now.memoryBytes,
      memoryLimitBytes: detail.memoryMB * 1024 * 1024,
      pids: now.pids,
      diskBytes: now.diskBytes,
    });
  });

  if (parsed.flags.has('json')) {
    process.stdout.write(json(rows));
    return 0;
  }
  process.stdout.write(
    table(
      ['ID', 'NAME', 'CPU', 'MEMORY', 'MEM %', 'PIDS', 'DISK'],
      rows.map((row) => [
        row.id,
        row.name ?? '-',
        row.cpuPercent === null ? '-' : `${row.cpuPercent.toFixed(1)}%`,
        `${bytes(row.memoryBytes)} / ${bytes(row.memoryLimitBytes)}`,
        row.memoryLimitBytes > 0 ? `${((row.memoryBytes / row.memoryLimitBytes) * 100).toFixed(1)}%` : '-',
        String(row.pids),
        bytes(row.diskBytes),
      ]),
    ),
  );
  return 0;
}
