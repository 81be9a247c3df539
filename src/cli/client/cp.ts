import { BrigError } from '../../protocol/index.ts';
import type { Daemon } from './connection.ts';
import { copyFromSandbox } from './cp-download.ts';
import type { CopySummary } from './cp-rules.ts';
import { copyToSandbox } from './cp-upload.ts';
import { openEnvd } from './envd.ts';
import { bytes, json, operandsOf, parseMixed } from './output.ts';

export const CP_HELP = `Usage: brig cp [--json] SRC DST

Copy files between the host and a running sandbox, either way. NAME:PATH
names the sandbox side (a relative PATH starts at /home/user); a path
starting with / or . is always the host's, as in docker cp.

  brig cp notes.txt box:             into /home/user
  brig cp box:/home/user/out ./out   a directory: ./out is created
  brig cp src/. box:app              what src holds, into /home/user/app

- A file goes to DST, or into it when DST is a directory.
- A directory becomes DST when DST does not exist, and goes into DST when it
  does; SRC/. copies what SRC holds into DST.
- DST's parent must exist; a DST ending in / must be an existing directory.
- Permission bits are kept; files belong to whoever receives them (the
  sandbox's user, or you).
- A symlink given as SRC is followed. Inside a directory, symlinks are copied
  as links; from a sandbox, only those pointing inside what is copied (the
  others, and sockets, FIFOs and devices, are skipped with a warning).

  --json   what was copied, as {"files","directories","links","bytes","skipped"}`;

const FLAGS = { json: { value: false }, help: { value: false, short: 'h' } };

/** One side of a copy: a sandbox's path, or the host's (sandbox null). */
export interface Side {
  sandbox: string | null;
  path: string;
}

const SANDBOX_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** As docker cp: NAME:PATH unless the argument starts with / or . (so ./a:b is a host file). */
export function sideOf(argument: string): Side {
  const colon = argument.indexOf(':');
  const name = argument.slice(0, colon);
  if (colon > 0 && !argument.startsWith('/') && !argument.startsWith('.') && SANDBOX_NAME.test(name)) return { sandbox: name, path: argument.slice(colon + 1) };
  return { sandbox: null, path: argument };
}

export async function cp(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, FLAGS, 'brig cp');
  const [from = '', to = ''] = operandsOf(parsed, ['SRC', 'DST'], 'brig cp');
  const source = sideOf(from);
  const destination = sideOf(to);
  if ((source.sandbox === null) === (destination.sandbox === null)) {
    throw new BrigError('BRIG_USAGE', source.sandbox === null ? 'neither side names a sandbox' : 'both sides name a sandbox', 'one side is NAME:PATH, the other a host path, e.g. `brig cp box:/home/user/out.txt .`');
  }
  const summary: CopySummary = { files: 0, directories: 0, links: 0, bytes: 0, skipped: [] };
  if (source.sandbox !== null) await copyFromSandbox(await openEnvd(daemon, source.sandbox), source.path, destination.path, summary);
  else if (destination.sandbox !== null) await copyToSandbox(await openEnvd(daemon, destination.sandbox), source.path, destination.path, summary);
  if (parsed.flags.has('json')) process.stdout.write(json(summary));
  else for (const skipped of summary.skipped) process.stderr.write(`brig cp: skipped ${skipped.path}: ${skipped.reason}\n`);
  if (!parsed.flags.has('json') && process.stderr.isTTY) process.stderr.write(`copied ${summary.files} file${summary.files === 1 ? '' : 's'}, ${bytes(summary.bytes)}\n`);
  return 0;
}
