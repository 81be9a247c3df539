import { startDaemon } from './index.ts';

/** The entry of dist/daemon.cjs: `brig serve`, its own bundle so `brig run` never loads it. */
export async function main(argv: string[]): Promise<void> {
  const option = (name: string): string | undefined => {
    const index = argv.indexOf(`--${name}`);
    return index === -1 ? undefined : argv[index + 1];
  };
  const port = option('port');
  const daemon = await startDaemon({ host: option('host'), port: port === undefined ? undefined : Number(port), stateDir: option('state'), envdBundle: `${__dirname}/envd.cjs` });
  process.stdout.write(`brig daemon listening on ${daemon.url} (state in ${daemon.stateDir})\n`);
  if (daemon.apiKeyCreated) process.stdout.write(`API key (shown once; also in ${daemon.stateDir}/api-key, mode 0600): ${daemon.apiKey}\n`);
  const stop = (): void => {
    void daemon.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
