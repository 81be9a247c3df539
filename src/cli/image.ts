/**
 * brig image: the image store under the state directory (<state>/images,
 * src/images), from the command line. These commands open the store
 * themselves, daemon or not: the store's write lock keeps a CLI and a
 * daemon from writing it at once. A bundle of its own (dist/image.cjs), so
 * `brig run` never loads the store.
 */
import { imageBuildCommand } from './image-build.ts';
export { withRunImage } from './image-jail.ts';
import type { RunContext } from './run.ts';
import { join } from 'node:path';
import { exportOci, openImageStore, type ImageStore } from '../images/index.ts';
import { BrigError, defaultStateDir } from '../protocol/index.ts';
import { parseArgs, type FlagSpec } from './args.ts';
import { bytes, json, operandsOf, parseMixed, span, table, write, type Parsed } from './client/output.ts';

const IMAGE_HELP = `Usage: brig image COMMAND [--state DIR] [--json]

Images in the store under brig's state directory (DIR/images): layers by
sha256, shared between images, named NAME:TAG (docs/images.md).

  brig image build [-f FILE] -t NAME [DIR]  build a Dockerfile, or a built-in template: brig image build base (see brig image build --help)
  brig image ls                           name:tag, layers, size, bytes shared with other images, created
  brig image inspect REF                  its layers, config (env, workdir, user, cmd, entrypoint, labels)
  brig image rm REF…                      remove names; their layers stay until prune
  brig image prune                        remove the layers no image names
  brig image import FILE [-t NAME[:TAG]]  a docker save archive, an OCI image layout (directory or .tar)
                                          or a root filesystem tarball (.tar, .tar.gz; needs -t)
  brig image export [--gzip] REF OUT      an OCI image layout: a directory, or a tar when OUT ends in .tar

  --state DIR   the state directory (default /var/lib/brig as root, ~/.local/state/brig otherwise)
  --json        JSON for scripts
REF is NAME or NAME:TAG (tag latest when left out).`;

const COMMON: Record<string, FlagSpec> = { state: { value: true }, json: { value: false }, help: { value: false, short: 'h' } };

interface Subcommand {
  flags?: Record<string, FlagSpec>;
  run(store: ImageStore, parsed: Parsed, usage: string): Promise<number>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  ls: { run: list },
  inspect: { run: inspect },
  rm: { run: remove },
  prune: { run: prune },
  import: { flags: { tag: { value: true, short: 't' } }, run: importFile },
  export: { flags: { gzip: { value: false } }, run: exportImage },
};

export async function imageCommand(argv: string[], context: RunContext & { templatesDir: string }): Promise<number> {
  // --state and --json may come before the subcommand too (brig image --state DIR ls)
  const leading = parseArgs(argv, COMMON, 'brig image');
  const [name, ...rest] = leading.rest;
  if (name === 'build') {
    // build parses its own flags; its RUN steps run in image jails (cli/image-jail.ts).
    const state = leading.flags.get('state')?.[0];
    return imageBuildCommand([...(state === undefined ? [] : ['--state', state]), ...rest], { insideDir: context.insideDir, templatesDir: context.templatesDir });
  }
  if (name === undefined || name === 'help' || leading.flags.has('help')) {
    await write(process.stdout, IMAGE_HELP + '\n');
    return name === undefined && !leading.flags.has('help') ? 125 : 0;
  }
  const subcommand = SUBCOMMANDS[name];
  const usage = `brig image ${name}`;
  if (subcommand === undefined) throw new BrigError('BRIG_USAGE', `unknown command 'brig image ${name}'`, `one of: ${Object.keys(SUBCOMMANDS).join(', ')} (see \`brig image --help\`)`);
  const parsed = parseMixed(rest, { ...COMMON, ...subcommand.flags }, 'brig image');
  for (const [flag, values] of leading.flags) {
    if (parsed.flags.has(flag)) throw new BrigError('BRIG_USAGE', `--${flag} given twice`, 'give it once');
    parsed.flags.set(flag, values);
  }
  if (parsed.flags.has('help')) {
    await write(process.stdout, IMAGE_HELP + '\n');
    return 0;
  }
  const stateDir = parsed.flags.get('state')?.[0] ?? defaultStateDir();
  const store = await openImageStore(join(stateDir, 'images'));
  return subcommand.run(store, parsed, usage);
}

async function list(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  operandsOf(parsed, [], usage);
  const images = await store.listImages();
  if (parsed.flags.has('json')) {
    await write(process.stdout, json(images));
    return 0;
  }
  const now = Date.now();
  const rows = images.map((image) => [`${image.name}:${image.tag}`, String(image.layers), bytes(image.size), bytes(image.shared), `${span(now - Date.parse(image.created))} ago`]);
  await write(process.stdout, table(['IMAGE', 'LAYERS', 'SIZE', 'SHARED', 'CREATED'], rows));
  return 0;
}

async function inspect(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  const [ref] = operandsOf(parsed, ['REF'], usage);
  const image = await store.getImage(ref ?? '');
  const layers = await Promise.all(image.layers.map(async (digest) => ({ digest, ...(await store.layer(digest)) })));
  if (parsed.flags.has('json')) {
    await write(process.stdout, json({ ...image, layers }));
    return 0;
  }
  const config = image.config;
  const lines = [
    `Image       ${image.name}:${image.tag}`,
    `Created     ${image.created}`,
    `Size        ${bytes(layers.reduce((sum, layer) => sum + (layer.bytes ?? 0), 0))} in ${layers.length} layer${layers.length === 1 ? '' : 's'}`,
    `User        ${config.user}`,
    `Workdir     ${config.workdir}`,
    `Entrypoint  ${config.entrypoint === null ? '-' : JSON.stringify(config.entrypoint)}`,
    `Cmd         ${config.cmd === null ? '-' : JSON.stringify(config.cmd)}`,
    ...(config.env.length === 0 ? ['Env         -'] : config.env.map((pair, index) => `${index === 0 ? 'Env' : ''}`.padEnd(12) + pair)),
    ...Object.entries(config.labels).map(([key, value], index) => `${index === 0 ? 'Labels' : ''}`.padEnd(12) + `${key}=${value}`),
    'Layers (lowest first):',
    ...layers.map((layer) => `  ${layer.digest}  ${bytes(layer.bytes ?? 0)}, ${layer.files ?? 0} files${layer.whiteouts?.length ? `, ${layer.whiteouts.length} whiteouts` : ''}${layer.dropped?.length ? `, ${layer.dropped.length} entries dropped at import` : ''}`),
  ];
  await write(process.stdout, lines.join('\n') + '\n');
  return 0;
}

async function remove(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  if (parsed.operands.length === 0) throw new BrigError('BRIG_USAGE', `${usage} needs REF`, 'see `brig image --help`');
  const removed: string[] = [];
  for (const ref of parsed.operands) {
    const image = await store.removeImage(ref);
    removed.push(`${image.name}:${image.tag}`);
  }
  await write(process.stdout, parsed.flags.has('json') ? json({ removed }) : `${removed.map((ref) => `removed ${ref}`).join('\n')}\n(its layers stay until brig image prune)\n`);
  return 0;
}

async function prune(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  operandsOf(parsed, [], usage);
  const result = await store.prune();
  await write(process.stdout, parsed.flags.has('json') ? json(result) : `removed ${result.layers.length} layer${result.layers.length === 1 ? '' : 's'}, ${bytes(result.bytes)}\n`);
  return 0;
}

/** How many dropped entries a person is shown; --json lists them all. */
const SHOWN_DROPS = 20;

async function importFile(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  const [file] = operandsOf(parsed, ['FILE'], usage);
  const ref = parsed.flags.get('tag')?.[0];
  const result = await store.importArchive(file ?? '', ref === undefined ? {} : { ref });
  if (parsed.flags.has('json')) {
    await write(process.stdout, json(result));
    return 0;
  }
  if (result.dropped.length > 0) {
    const lines = result.dropped.slice(0, SHOWN_DROPS).map((one) => `  ${one.layer === 'archive' ? 'archive' : one.layer.slice(7, 19)}  ${one.path}: ${one.why}`);
    const more = result.dropped.length > SHOWN_DROPS ? [`  … and ${result.dropped.length - SHOWN_DROPS} more (--json lists them all)`] : [];
    await write(process.stderr, `brig: warning: ${result.dropped.length} entr${result.dropped.length === 1 ? 'y' : 'ies'} dropped or changed (devices, set-id bits, paths leading out, ids past 65535):\n${[...lines, ...more].join('\n')}\n`);
  }
  const fresh = result.layers.filter((layer) => !layer.existed);
  const lines = result.images.map((image) => `imported ${image.name}:${image.tag} (${result.format}, ${image.layers.length} layer${image.layers.length === 1 ? '' : 's'})`);
  lines.push(`${fresh.length} new layer${fresh.length === 1 ? '' : 's'}, ${bytes(fresh.reduce((sum, layer) => sum + layer.bytes, 0))}; ${result.layers.length - fresh.length} already in the store`);
  await write(process.stdout, lines.join('\n') + '\n');
  return 0;
}

async function exportImage(store: ImageStore, parsed: Parsed, usage: string): Promise<number> {
  const [ref, out] = operandsOf(parsed, ['REF', 'OUT'], usage);
  const result = await exportOci(store, ref ?? '', out ?? '', { gzip: parsed.flags.has('gzip') });
  const size = result.layers.reduce((sum, layer) => sum + layer.size, 0);
  await write(process.stdout, parsed.flags.has('json') ? json(result) : `exported ${ref} to ${result.out} (OCI image layout, ${result.layers.length} layer${result.layers.length === 1 ? '' : 's'}, ${bytes(size)})\n`);
  return 0;
}
