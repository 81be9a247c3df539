import { percentile } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon } from '../test/helpers/daemon.ts';

/**
 * Issue 14's job benchmark, through `brig serve` and plain fetch as seed
 * 003's clients: throughput (trivial shell jobs per second, 4 at a time,
 * the pool refilling behind them), and schedule → running latency with the
 * warm pool, one job at a time (the daemon's own timestamps: created_at to
 * started_at, so the client's polling adds nothing).
 */

const KEY = 'bench';

interface Status {
  state: string;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

export async function benchJobs(throughputJobs: number, latencyJobs: number): Promise<string> {
  const state = tempWorkspace('brig-bench-jobs-');
  const daemon = await serveDaemon(state.dir, { apiKey: KEY, pool: 4, args: ['--jobs', '4'] });
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${daemon.url}${path}`, { method, headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  const schedule = async (): Promise<string> => (await call<{ job_id: string }>('POST', '/schedule', { kind: 'shell', code: 'true' })).job_id;
  const ended = async (id: string): Promise<Status> => {
    for (;;) {
      const job = await call<Status>('GET', `/v1/jobs/${id}/wait?timeout=60`);
      if (job.state === 'succeeded' || job.state === 'failed') return job;
    }
  };
  try {
    for (let warm = 0; warm < 4; warm++) await ended(await schedule());
    const began = process.hrtime.bigint();
    const ids = await Promise.all(Array.from({ length: throughputJobs }, schedule));
    const results = await Promise.all(ids.map(ended));
    const seconds = Number(process.hrtime.bigint() - began) / 1e9;
    const failed = results.filter((job) => job.state !== 'succeeded').length;

    const waits: number[] = [];
    const totals: number[] = [];
    for (let index = 0; index < latencyJobs; index++) {
      // The pool refills between jobs, as it would between requests that do not come all at once.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const job = await ended(await schedule());
      waits.push(Date.parse(job.started_at ?? '') - Date.parse(job.created_at));
      totals.push(Date.parse(job.ended_at ?? '') - Date.parse(job.created_at));
    }
    waits.sort((a, b) => a - b);
    totals.sort((a, b) => a - b);
    return [
      '### jobs (POST /schedule through `brig serve --jobs 4`, warm pool of 4)',
      '',
      '| what | measured |',
      '| --- | --- |',
      `| throughput: ${throughputJobs} shell jobs \`true\`, scheduled at once | ${(throughputJobs / seconds).toFixed(1)} jobs/s (${seconds.toFixed(1)} s${failed ? `, ${failed} failed` : ''}) |`,
      `| schedule → running, one at a time | p50 ${percentile(waits, 0.5).toFixed(0)} ms, p95 ${percentile(waits, 0.95).toFixed(0)} ms (${latencyJobs} jobs) |`,
      `| schedule → ended (sandbox, files, \`true\`, end recorded) | p50 ${percentile(totals, 0.5).toFixed(0)} ms, p95 ${percentile(totals, 0.95).toFixed(0)} ms |`,
      '',
    ].join('\n');
  } finally {
    await daemon.stop();
    state.remove();
  }
}
