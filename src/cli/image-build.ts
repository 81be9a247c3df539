/**
 * brig image build: a Dockerfile (or a built-in template by name) into the
 * image store under brig's state directory. RUN steps run in image jails
 * (image-jail.ts). Progress goes to stdout; Ctrl-C stops the build and
 * leaves no half-written layer.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildImage, isBuiltInTemplate, openImageStore, templateDockerfile, type StepRunner } from '../images/index.ts';
import { BrigError, defaultStateDir } from '../protocol/index.ts';
import { parseMixed } from './client/output.ts';
import { imageStepRunner } from './image-jail.ts';

export const IMAGE_BUILD_HELP = `Usage: brig image build [-f Dockerfile] -t NAME[:TAG] [flags] [DIR]
       brig image build TEMPLATE            a built-in template: base

Builds an image from a Dockerfile into brig's image store. DIR (default .) is
the build context: what COPY and ADD take files from, minus .dockerignore.
FROM takes debian:SUITE or debian:SUITE-slim (bootstrapped from the host apt's
Debian mirror), scratch, or a brig image. RUN steps run in a brig jail over the
layers so far; an unchanged step is taken from the cache. docs/images.md,
"Building from a Dockerfile", lists what is supported.

  -f, --file FILE        the Dockerfile (default DIR/Dockerfile)
  -t, --tag NAME[:TAG]   the image's name (tag latest when left out)
  --build-arg K=V        a value for ARG K (repeatable)
  --network MODE         RUN's network: mirror (default: the Debian mirror only),
                         none, or host
  --no-cache             build every step again
  --state DIR            brig's state directory (default as brig serve's)`;

export interface ImageBuildDeps {
  /** brig's files for the inside of a jail (dist/inside), for the RUN steps' jails. */
  insideDir: string;
  /** Runs RUN steps; default: each in an image jail (image-jail.ts). */
  runStep?: StepRunner;
  /** Where the built-in templates' Dockerfiles are (dist/templates beside the bundle). */
  templatesDir: string;
}

export async function imageBuildCommand(argv: string[], deps: ImageBuildDeps, out: (chunk: string | Buffer) => void = (chunk) => process.stdout.write(chunk)): Promise<number> {
  const usage = 'brig image build';
  // Flags before or after the directory, as docker build takes them.
  const { flags, operands: rest } = parseMixed(
    argv,
    {
      file: { value: true, short: 'f' },
      tag: { value: true, short: 't' },
      'build-arg': { value: true, repeat: true },
      network: { value: true },
      'no-cache': { value: false },
      state: { value: true },
      help: { value: false, short: 'h' },
    },
    usage,
  );
  if (flags.has('help')) {
    out(`${IMAGE_BUILD_HELP}\n`);
    return 0;
  }
  if (rest.length > 1) throw new BrigError('BRIG_USAGE', `brig image build takes one directory, got ${rest.length} arguments`, 'brig image build -t NAME DIR, or a template: brig image build base');
  const word = rest[0] ?? '.';
  const network = flags.get('network')?.[0] ?? 'mirror';
  if (network !== 'mirror' && network !== 'none' && network !== 'host') throw new BrigError('BRIG_USAGE', `--network ${network}: expected mirror, none or host`, `see \`${usage} --help\``);
  const buildArgs: Record<string, string> = {};
  for (const pair of flags.get('build-arg') ?? []) {
    const equals = pair.indexOf('=');
    if (equals < 1) throw new BrigError('BRIG_USAGE', `--build-arg ${pair}: expected NAME=value`, 'brig image build --build-arg VERSION=1.2 ...');
    buildArgs[pair.slice(0, equals)] = pair.slice(equals + 1);
  }

  // a template name, unless a directory of that name is meant (it has a Dockerfile) or -f says where one is
  const template = !flags.has('file') && isBuiltInTemplate(word) && !existsSync(join(word, 'Dockerfile')) ? word : undefined;
  let dockerfile: string;
  let context: string;
  let tag = flags.get('tag')?.[0];
  if (template !== undefined) {
    dockerfile = await templateDockerfile(template, deps.templatesDir);
    context = deps.templatesDir;
    tag ??= template;
  } else {
    context = resolve(word);
    const file = resolve(flags.get('file')?.[0] ?? join(context, 'Dockerfile'));
    dockerfile = await fs.readFile(file, 'utf8').catch(() => {
      throw new BrigError('BRIG_USAGE', `no Dockerfile at ${file}`, 'give one with -f FILE, or build a directory that has one (brig image build -t NAME DIR)');
    });
    if (tag === undefined) throw new BrigError('BRIG_USAGE', 'brig image build needs -t NAME[:TAG]', 'name the image: brig image build -t myimage .');
  }

  const store = await openImageStore(join(flags.get('state')?.[0] ?? defaultStateDir(), 'images'));
  const controller = new AbortController();
  const stop = (): void => {
    out('\ninterrupted: stopping the step; nothing of it is kept\n');
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await buildImage({
      store,
      dockerfile,
      context,
      tag,
      buildArgs,
      network,
      output: out,
      signal: controller.signal,
      noCache: flags.has('no-cache'),
      runStep: deps.runStep ?? imageStepRunner({ insideDir: deps.insideDir }),
    });
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
  return controller.signal.aborted ? 130 : 0;
}
