import { startDaemon, type DaemonOptions } from './index.ts';

/** The entry of dist/daemon.cjs: `brig serve`, its own bundle so `brig run` never loads it. The CLI parses the flags. */
export async function main(options: Omit<DaemonOptions, 'envdBundle' | 'insideDir'>): Promise<void> {
  const daemon = await startDaemon({ ...options, envdBundle: `${__dirname}/envd.cjs`, insideDir: `${__dirname}/inside` });
  process.stdout.write(`brig daemon listening on ${daemon.url} (state in ${daemon.stateDir})\n`);
  if (daemon.apiKeyCreated) process.stdout.write(`API key (shown once; also in ${daemon.stateDir}/api-key, mode 0600): ${daemon.apiKey}\n`);
  const stop = (): void => {
    void daemon.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
