import { segment, type Daemon } from './connection.ts';
import { json, operandsOf, parseMixed } from './output.ts';

export const COMMIT_HELP = `Usage: brig commit [--json] NAME IMAGE[:TAG]

Turn a running image sandbox's root into a new image of the daemon's store:
the layers it booted from plus one layer of what it wrote, with its image's
config (env, workdir, user, command). An image of that name and tag is
replaced. The sandbox keeps running while its files are read, as with
docker commit: stop what writes in it first for a consistent copy.
\`brig create --image IMAGE\` boots from the result. Prints the image, then
each write the store changed (set-id bits cleared) on stderr.

  --json   the image, its layers and what was changed, as JSON`;

interface Committed {
  image: string;
  layers: string[];
  dropped: Array<{ path: string; why: string }>;
}

export async function commit(daemon: Daemon, argv: string[]): Promise<number> {
  const parsed = parseMixed(argv, { json: { value: false }, help: { value: false, short: 'h' } }, 'brig commit');
  const [sandbox = '', image = ''] = operandsOf(parsed, ['NAME', 'IMAGE'], 'brig commit');
  const committed = await daemon.call<Committed>('POST', `/v1/sandboxes/${segment(sandbox)}/commit`, { image });
  if (parsed.flags.has('json')) {
    process.stdout.write(json(committed));
    return 0;
  }
  for (const { path, why } of committed.dropped) process.stderr.write(`brig commit: ${path}: ${why}\n`);
  process.stdout.write(`${committed.image}\n`);
  return 0;
}
