import { chmodSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';

/**
 * What `brig serve` and its local clients agree on without talking: where
 * the daemon keeps its state and its API key, and where it listens by default.
 */

export const DEFAULT_DAEMON_URL = 'http://127.0.0.1:3000';

/** The E2B process tag of a sandbox's monitor shell (brig create --monitor-port), by which `brig attach` finds it. */
export const MONITOR_TAG = 'brig-monitor';

/** $BRIG_STATE_DIR; else /var/lib/brig for root, $XDG_STATE_HOME/brig or ~/.local/state/brig otherwise. */
export function defaultStateDir(): string {
  if (process.env.BRIG_STATE_DIR) return process.env.BRIG_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/brig';
  return `${process.env.XDG_STATE_HOME || `${process.env.HOME || homedir()}/.local/state`}/brig`;
}

/** The file in a state directory that holds the daemon's API key (mode 0600). */
export function apiKeyFile(stateDir: string): string {
  return `${stateDir}/api-key`;
}

/** The file in a state directory that holds model API keys for the LLM gateway (NAME=value lines, mode 0600). */
export function llmKeyFile(stateDir: string): string {
  return `${stateDir}/llm-keys`;
}

/**
 * A directory of brig's state others may pass through but not list (0711):
 * when brig runs as root and a jail as another user, bubblewrap (as that
 * user) must reach a socket or home below it.
 */
export function traversable(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  chmodSync(dir, 0o711);
}
