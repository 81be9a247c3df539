/**
 * metrics/: the daemon in Prometheus's text format (GET /metrics), counted
 * from the event log and read from the store and the process.
 */
export { daemonMetrics, type DaemonMetrics } from './daemon-metrics.ts';
