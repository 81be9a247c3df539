import { readdirSync } from 'node:fs';
import type { JobStore } from '../jobs/index.ts';
import type { SandboxManager, Store } from '../sandboxes/index.ts';
import type { DaemonEvent, EventLog } from '../timeline/index.ts';
import { Counter, gauge, Histogram } from './registry.ts';

/**
 * GET /metrics: the daemon in Prometheus's text format. What happens is
 * counted from the event log as it is recorded (one instrumentation path:
 * what `brig events` shows is what is counted); what is, is read from the
 * store and the process when scraped. Counters start at zero with the
 * daemon, as Prometheus expects of a restarted target.
 */

const SECONDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface DaemonMetrics {
  render(): string;
  close(): void;
}

export function daemonMetrics(sources: { events: EventLog; store: Store & JobStore; manager: SandboxManager }): DaemonMetrics {
  const creates = new Counter('brig_sandbox_creates_total', 'Sandboxes created, by tier and whether the warm pool served them');
  const createSeconds = new Histogram('brig_sandbox_create_seconds', 'From a create request to envd answering in the sandbox', SECONDS);
  const ends = new Counter('brig_sandbox_ends_total', 'Sandboxes ended, by how: killed (on request), timeout, died (by itself)');
  const oom = new Counter('brig_sandbox_oom_total', 'Decisions at a sandbox\'s memory limit, by action');
  const hung = new Counter('brig_sandbox_hung_total', 'Sandboxes found hung (commands running, no output, no CPU), by the action taken');
  const violations = new Counter('brig_violations_total', 'Refused accesses, by kind');
  const execs = new Counter('brig_execs_total', 'Commands ended through envd, by whether they exited 0');
  const execSeconds = new Histogram('brig_exec_seconds', 'How long commands run through envd took, start to end', SECONDS);
  const jobEnds = new Counter('brig_job_ends_total', 'Jobs ended, by state');
  const jobWait = new Histogram('brig_job_queue_wait_seconds', 'From a job\'s schedule to its start', SECONDS);

  const count = (event: DaemonEvent): void => {
    const detail = event.detail;
    switch (event.type) {
      case 'created':
        creates.inc({ tier: String(detail.tier ?? 'unknown'), pooled: String(detail.pooled === true) });
        if (typeof detail.createMs === 'number') createSeconds.observe(detail.createMs / 1000);
        return;
      case 'killed':
      case 'timeout':
      case 'died':
        return ends.inc({ how: event.type });
      case 'oom':
        return oom.inc({ action: String(detail.action ?? 'unknown') });
      case 'hung':
        return hung.inc({ action: String(detail.action ?? 'flag') });
      case 'violation':
        return violations.inc({ kind: String(detail.kind ?? 'unknown') });
      case 'exec.ended':
        execs.inc({ ok: String(detail.exitCode === 0) });
        if (typeof detail.durationMs === 'number') execSeconds.observe(detail.durationMs / 1000);
        return;
      case 'job.running':
        if (typeof detail.waitedMs === 'number') jobWait.observe(detail.waitedMs / 1000);
        return;
      case 'job.succeeded':
      case 'job.failed':
        return jobEnds.inc({ state: event.type.slice('job.'.length) });
      default:
    }
  };
  const stop = sources.events.follow(count);

  return {
    render(): string {
      const byStateAndTier = new Map<string, { labels: Record<string, string>; value: number }>();
      for (const record of sources.manager.listAll()) {
        const labels = { state: record.state, tier: record.handle?.driver ?? record.policy.tier ?? 'jail' };
        const key = `${labels.state}/${labels.tier}`;
        byStateAndTier.set(key, { labels, value: (byStateAndTier.get(key)?.value ?? 0) + 1 });
      }
      const pool = sources.manager.pool();
      const spent = sources.store.spentTotal();
      const memory = process.memoryUsage();
      return [
        gauge('brig_sandboxes', 'Sandboxes the daemon holds, by state and tier (stopped ones keep a workspace)', [...byStateAndTier.values()]),
        gauge('brig_pool_sandboxes', 'The warm pool: booted and waiting, booting, and wanted', [
          { labels: { state: 'ready' }, value: pool.ready },
          { labels: { state: 'booting' }, value: pool.booting },
          { labels: { state: 'wanted' }, value: pool.size },
        ]),
        gauge('brig_jobs', 'Jobs the daemon keeps, by state', Object.entries(sources.store.countJobs()).map(([state, value]) => ({ labels: { state }, value }))),
        gauge('brig_llm_requests', 'Requests through the LLM gateway by the sandboxes the daemon still holds', [{ value: spent.requests }]),
        gauge('brig_llm_tokens', 'Tokens through the LLM gateway by the sandboxes the daemon still holds, by direction', [
          { labels: { direction: 'input' }, value: spent.inputTokens },
          { labels: { direction: 'output' }, value: spent.outputTokens },
        ]),
        creates.render(),
        createSeconds.render(),
        ends.render(),
        oom.render(),
        hung.render(),
        violations.render(),
        execs.render(),
        execSeconds.render(),
        jobEnds.render(),
        jobWait.render(),
        gauge('process_resident_memory_bytes', "The daemon's resident memory", [{ value: memory.rss }]),
        gauge('process_open_fds', "The daemon's open file descriptors", openFds()),
        gauge('process_start_time_seconds', 'When the daemon started, in seconds since the epoch', [{ value: Math.round((Date.now() - process.uptime() * 1000) / 1000) }]),
      ].join('');
    },
    close: stop,
  };
}

/** One series, or none when /proc cannot say (never a made-up zero). */
function openFds(): Array<{ value: number }> {
  try {
    return [{ value: readdirSync('/proc/self/fd').length }];
  } catch {
    return [];
  }
}
