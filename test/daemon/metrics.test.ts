import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

/** GET /metrics from a real daemon, after real sandboxes, commands and jobs: Prometheus's text format, the numbers what happened. */

const API_KEY = 'metrics-key';

/** Each sample line as name{labels} → value; every line must be a comment or a sample. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-z_]+)(\{[^}]*\})? (-?[\d.e+]+)$/.exec(line);
    assert.ok(match, `not a sample line: ${JSON.stringify(line)}`);
    samples.set(`${match[1]}${match[2] ?? ''}`, Number(match[3]));
  }
  return samples;
}

describe('brig serve: GET /metrics', () => {
  const state = tempWorkspace('brig-metrics-');
  let daemon: RunningDaemon;
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
  });
  after(async () => {
    await daemon.stop();
    state.remove();
  });

  test('counts creates, ends, commands and jobs as they happened; reads sandboxes, jobs and the process as they are', async () => {
    const sandbox = await Sandbox.create(opts());
    await sandbox.commands.run('true');
    await sandbox.commands.run('exit 2').catch(() => {});
    const scheduled = await fetch(`${daemon.url}/schedule`, { method: 'POST', headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'shell', code: 'true' }) });
    const { job_id: jobId } = (await scheduled.json()) as { job_id: string };
    await fetch(`${daemon.url}/v1/jobs/${jobId}/wait?timeout=600`, { headers: { 'x-api-key': API_KEY } });
    await sandbox.kill();

    const response = await fetch(`${daemon.url}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const samples = parse(await response.text());
    assert.equal(samples.get('brig_sandbox_creates_total{tier="jail",pooled="false"}'), 2, 'the sandbox and the job\'s');
    assert.equal(samples.get('brig_sandbox_create_seconds_count'), 2);
    assert.ok((samples.get('brig_sandbox_create_seconds_sum') ?? 0) > 0);
    assert.equal(samples.get('brig_sandbox_ends_total{how="killed"}'), 2);
    assert.equal(samples.get('brig_execs_total{ok="true"}'), 1);
    assert.equal(samples.get('brig_execs_total{ok="false"}'), 1);
    assert.equal(samples.get('brig_exec_seconds_bucket{le="+Inf"}'), 2);
    assert.equal(samples.get('brig_job_ends_total{state="succeeded"}'), 1);
    assert.equal(samples.get('brig_job_queue_wait_seconds_count'), 1);
    assert.equal(samples.get('brig_jobs{state="succeeded"}'), 1);
    assert.equal(samples.get('brig_jobs{state="queued"}'), 0);
    assert.ok((samples.get('process_resident_memory_bytes') ?? 0) > 10 * 1024 * 1024);
    assert.ok((samples.get('process_open_fds') ?? 0) > 3);
    // Buckets rise with their bounds.
    const buckets = [...samples.entries()].filter(([name]) => name.startsWith('brig_sandbox_create_seconds_bucket')).map(([, value]) => value);
    assert.ok(buckets.every((value, index) => index === 0 || value >= (buckets[index - 1] ?? 0)), JSON.stringify(buckets));
  });

  test("E2B's getMetrics: a sample every 5 s of CPU (as a share of its CPUs), memory against its limit, and its workspace's disk", async () => {
    const sandbox = await Sandbox.create(opts());
    try {
      await sandbox.files.write('/home/user/ballast.bin', new Blob([Buffer.alloc(3 * 1024 * 1024, 1)]));
      await sandbox.commands.run('timeout 30 sh -c "while :; do :; done"', { background: true });
      let metrics = await sandbox.getMetrics();
      while (!metrics.some((sample) => sample.cpuUsedPct > 20 && sample.diskUsed >= 3 * 1024 * 1024)) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        metrics = await sandbox.getMetrics();
      }
      const [first] = metrics;
      assert.ok(first && first.timestamp instanceof Date && !Number.isNaN(first.timestamp.getTime()));
      assert.equal(first?.memTotal, 2048 * 1024 * 1024, 'the default policy\'s memory');
      assert.ok((first?.memUsed ?? 0) > 1024 * 1024 && (first?.memUsed ?? 0) < (first?.memTotal ?? 0));
      assert.ok((first?.cpuCount ?? 0) >= 1);
      assert.ok((first?.diskTotal ?? 0) > (first?.diskUsed ?? 0));
      assert.ok(metrics.every((sample) => sample.cpuUsedPct >= 0 && sample.cpuUsedPct <= 100));
      const later = await Sandbox.getMetrics(sandbox.sandboxId, { ...opts(), start: new Date(Date.now() + 3600_000) });
      assert.deepEqual(later, [], 'nothing from the future');
    } finally {
      await sandbox.kill();
    }
    const gone = await fetch(`${daemon.url}/sandboxes/${sandbox.sandboxId}/metrics`, { headers: { 'x-api-key': API_KEY } });
    assert.equal(gone.status, 404);
  });

  test('needs the API key', async () => {
    assert.equal((await fetch(`${daemon.url}/metrics`)).status, 401);
  });
});
