import brigSpawn from 'brig-spawn';
import { startEnvd } from './index.ts';

/**
 * The entry point of dist/envd.cjs, the one file mounted read-only into every
 * sandbox: `node envd.cjs --listen ADDRESS`. The access token comes in
 * BRIG_ENVD_ACCESS_TOKEN and is removed from the environment before anything
 * runs, so no sandbox process inherits it; and envd makes itself not
 * dumpable, because the sandbox's processes run as envd's own uid and would
 * otherwise read it from /proc/<envd>/environ (where removing a variable
 * changes nothing), or envd's memory.
 */
export async function main(argv: string[]): Promise<void> {
  let listen = '127.0.0.1:49983';
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index];
    if (word === '--listen') listen = argv[++index] ?? listen;
    else if (word?.startsWith('--listen=')) listen = word.slice('--listen='.length);
    else if (word === '--help' || word === '-h') {
      process.stdout.write('Usage: envd [--listen HOST:PORT | --listen unix:/path | --listen fd:N | --listen mux:N]\n');
      return;
    } else {
      process.stderr.write(`envd: unknown argument ${word}\n`);
      process.exit(2);
    }
  }
  brigSpawn.notDumpable();
  const accessToken = process.env.BRIG_ENVD_ACCESS_TOKEN || null;
  delete process.env.BRIG_ENVD_ACCESS_TOKEN;
  // An image's WORKDIR: where processes start by default (only envd's, as the token).
  const workdir = process.env.BRIG_ENVD_WORKDIR || null;
  delete process.env.BRIG_ENVD_WORKDIR;
  // A sandboxed process can misbehave in every way; envd logs and keeps serving.
  process.on('uncaughtException', (error) => process.stderr.write(`envd: ${error.stack ?? error.message}\n`));
  process.on('unhandledRejection', (error) => process.stderr.write(`envd: ${String(error)}\n`));
  const envd = await startEnvd({ listen, accessToken, workdir });
  process.stdout.write(`envd listening on ${envd.address}\n`);
  const stop = (): void => {
    void envd.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module) void main(process.argv.slice(2));
