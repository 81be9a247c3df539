import { startDaemon, type DaemonOptions } from './index.ts';
import { openImageStore } from '../images/index.ts';

async function hasImage(storeDir: string, name: string): Promise<boolean> {
  const images = await (await openImageStore(storeDir)).listImages();
  return images.some((image) => image.name === name && image.tag === 'latest');
}

/** The entry of dist/daemon.cjs: `brig serve`, its own bundle so `brig run` never loads it. The CLI parses the flags. */
export async function main(options: Omit<DaemonOptions, 'envdBundle' | 'insideDir'>): Promise<void> {
  const daemon = await startDaemon({ ...options, envdBundle: `${__dirname}/envd.cjs`, insideDir: `${__dirname}/inside` });
  process.stdout.write(`brig daemon listening on ${daemon.url} (state in ${daemon.stateDir})\n`);
  if (process.getuid?.() === 0 && !(await hasImage(`${daemon.stateDir}/images`, 'base'))) {
    process.stdout.write("template 'base' is the host view (no root inside) until the base image is built: brig image build base, or brig serve --build-base\n");
  }
  if (daemon.apiKeyCreated) process.stdout.write(`API key (shown once; also in ${daemon.stateDir}/api-key, mode 0600): ${daemon.apiKey}\n`);
  const stop = (): void => {
    void daemon.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
