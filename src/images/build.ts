/**
 * buildImage: a Dockerfile, a context directory and a tag in, a tagged image
 * in the store out (docs/images.md, "Building from a Dockerfile"). Each
 * instruction is a step; the steps that change files (FROM debian, RUN,
 * COPY, ADD, a WORKDIR that had to be created) make a layer, the others
 * change the image's config. Every step has a cache key chained from the
 * one before it, so an unchanged step is a cache hit and a second build of
 * the same recipe and context is all hits. RUN steps run through the
 * injected StepRunner (the images room never imports drivers).
 */
import { promises as fs } from 'node:fs';
import { join, posix } from 'node:path';
import { BrigError } from '../protocol/index.ts';
import { BuildCache, stepKey } from './build-cache.ts';
import { expandSource, hashSources, listSource, loadIgnore, type IgnoreRules, type Source } from './build-context.ts';
import { formatBytes, StepClock, summary } from './build-progress.ts';
import { isLocalArchive, Stage } from './build-stage.ts';
import { commitDirectory } from './layer-tar.ts';
import type { StepRunner } from './build-types.ts';
import { bootstrapDebian, hostDebianMirror, parseDebianRef, type DebianBase } from './debian.ts';
import { invalidAt, parseDockerfile, type CommandForm, type Instruction } from './dockerfile.ts';
import { processWord, WordError } from './dockerfile-words.ts';
import { extractLayer } from './archive.ts';
import { removeTree } from './files.ts';
import { ImageView, resolveIds, type Ids } from './image-view.ts';
import { parseRef } from './names.ts';
import { processLeaseHolder, type ImageConfig, type ImageManifest, type ImageStore } from './store.ts';

export interface BuildOptions {
  store: ImageStore;
  /** The Dockerfile's text. */
  dockerfile: string;
  /** The build context: the directory COPY and ADD take files from. */
  context: string;
  /** NAME or NAME:TAG. */
  tag: string;
  /** --build-arg K=V: overrides ARG defaults. */
  buildArgs?: Record<string, string>;
  /** Runs RUN steps; a recipe with RUN fails without one. */
  runStep?: StepRunner;
  /** RUN's network: the host apt sources' mirror only (default), none, or the host's. */
  network?: 'none' | 'mirror' | 'host';
  /** Progress and the steps' live output. */
  output: (chunk: string | Buffer) => void;
  signal?: AbortSignal;
  /** Build every step again (the results still refresh the cache). */
  noCache?: boolean;
  /** The Debian mirror for FROM debian; default: the host apt's, else mmdebstrap's own. */
  mirror?: string;
}

export interface StepReport {
  step: number;
  instruction: string;
  /** true: taken from the cache; false: built; null: a config-only step. */
  cached: boolean | null;
  layer: string | null;
  seconds: number;
}

export interface BuildResult {
  image: ImageManifest;
  steps: StepReport[];
}

const DEFAULT_SHELL = ['/bin/sh', '-c'];
const DEBIAN_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** How much of a failed RUN step's output its error repeats. */
const FAILED_TAIL_BYTES = 4096;

interface Outcome {
  cached: boolean | null;
  layer: string | null;
}

export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  const ref = parseRef(options.tag);
  const recipe = parseDockerfile(options.dockerfile);
  for (const warning of recipe.warnings) options.output(`warning: Dockerfile line ${warning.line}: ${warning.message}\n`);
  const context = await fs.realpath(options.context).catch(() => {
    throw new BrigError('BRIG_USAGE', `the build context ${options.context} does not exist`, 'give the directory COPY takes its files from (default: the current one)');
  });
  const build = new Build(options, context, await loadIgnore(context), recipe.globalArgs);
  const steps: StepReport[] = [];
  const total = recipe.instructions.length;
  // The layers so far are no image's until the tag: a lease keeps a prune elsewhere from taking them between steps.
  const holder = processLeaseHolder('build');
  try {
    for (const [index, instruction] of recipe.instructions.entries()) {
      await options.store.lease(holder, build.layers);
      await runStep(index, instruction);
    }
    build.warnUnusedArgs();
    // The last step's layer too, until the tag names it.
    await options.store.lease(holder, build.layers);
    const image = await options.store.tagImage(ref.name, ref.tag, { layers: build.layers, config: build.config });
    options.output(await summary(options.store, `${ref.name}:${ref.tag}`, steps));
    return { image, steps };
  } finally {
    await options.store.release(holder);
  }

  async function runStep(index: number, instruction: (typeof recipe.instructions)[number]): Promise<void> {
    if (aborted(options.signal)) throw interrupted(index + 1);
    options.output(`Step ${index + 1}/${total}: ${shorten(instruction.text)}\n`);
    const clock = new StepClock();
    let outcome: Outcome;
    try {
      outcome = await build.step(instruction, index + 1);
    } catch (error) {
      if (aborted(options.signal)) throw interrupted(index + 1);
      if (error instanceof WordError) throw invalidAt(instruction.line, error.message, 'close every quote; ${NAME:-default} and ${NAME:+alt} are the forms supported');
      throw error;
    }
    const seconds = clock.seconds();
    steps.push({ step: index + 1, instruction: instruction.text, ...outcome, seconds });
    options.output(await build.stepLine(outcome, seconds));
  }
}

/** A function, not an inline check: TypeScript would narrow `aborted` to false after the first test. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function interrupted(step: number): BrigError {
  return new BrigError('BRIG_BUILD_FAILED', `the build was interrupted at step ${step}`, 'nothing of that step was kept; the steps before it are cached, so building again resumes there');
}

function shorten(text: string): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > 120 ? `${flat.slice(0, 117)}…` : flat;
}

class Build {
  layers: string[] = [];
  config: ImageConfig = { env: [], workdir: '/', user: 'root', cmd: null, entrypoint: null, labels: {} };
  private key = '';
  private shell = DEFAULT_SHELL;
  private cmdSet = false;
  /** ARGs declared after FROM, with their values (undefined: declared without one). */
  private readonly args = new Map<string, string | undefined>();
  private readonly usedBuildArgs = new Set<string>();
  private readonly cache: BuildCache;

  constructor(
    private readonly options: BuildOptions,
    private readonly context: string,
    private readonly ignore: IgnoreRules,
    private readonly globalArgs: Array<{ name: string; value?: string }>,
  ) {
    this.cache = new BuildCache(options.store);
  }

  private get store(): ImageStore {
    return this.options.store;
  }

  /** What $NAME means in an instruction: ARGs, then ENV over them (as in Docker). */
  private vars(): Map<string, string> {
    const vars = new Map<string, string>();
    for (const [name, value] of this.args) if (value !== undefined) vars.set(name, value);
    for (const [name, value] of envMap(this.config.env)) vars.set(name, value);
    return vars;
  }

  private buildArg(name: string): string | undefined {
    const value = this.options.buildArgs?.[name];
    if (value !== undefined) this.usedBuildArgs.add(name);
    return value;
  }

  async step(instruction: Instruction, step: number): Promise<Outcome> {
    switch (instruction.kind) {
      case 'FROM':
        return this.from(instruction.image, instruction.line);
      case 'ARG':
        for (const { name, value } of instruction.args) {
          const global = this.globalArgs.find((one) => one.name === name);
          const fallback = value !== undefined ? processWord(value, this.vars()) : global?.value !== undefined ? processWord(global.value, new Map()) : undefined;
          this.args.set(name, this.buildArg(name) ?? fallback);
        }
        return this.configStep('ARG', JSON.stringify([...this.args]));
      case 'ENV': {
        const vars = this.vars();
        const env = envMap(this.config.env);
        for (const pair of instruction.pairs) env.set(processWord(pair.key, vars), processWord(pair.value, vars));
        this.config.env = [...env].map(([name, value]) => `${name}=${value}`);
        return this.configStep('ENV', JSON.stringify(this.config.env));
      }
      case 'LABEL': {
        const vars = this.vars();
        for (const pair of instruction.pairs) this.config.labels[processWord(pair.key, vars)] = processWord(pair.value, vars);
        return this.configStep('LABEL', JSON.stringify(this.config.labels));
      }
      case 'USER':
        this.config.user = processWord(instruction.value, this.vars());
        return this.configStep('USER', this.config.user);
      case 'SHELL':
        this.shell = instruction.shell;
        return this.configStep('SHELL', JSON.stringify(this.shell));
      case 'CMD':
        this.config.cmd = this.argv(instruction.command);
        this.cmdSet = true;
        return this.configStep('CMD', JSON.stringify(this.config.cmd));
      case 'ENTRYPOINT':
        this.config.entrypoint = this.argv(instruction.command);
        // as Docker: an ENTRYPOINT resets the CMD inherited from the base image
        if (!this.cmdSet) this.config.cmd = null;
        return this.configStep('ENTRYPOINT', JSON.stringify(this.config.entrypoint));
      case 'WORKDIR':
        return this.workdir(processWord(instruction.value, this.vars()));
      case 'RUN':
        return this.run(instruction.command, instruction.network, instruction.line, step);
      case 'COPY':
      case 'ADD':
        return this.copy(instruction);
    }
  }

  private argv(command: CommandForm): string[] {
    return 'exec' in command ? command.exec : [...this.shell, command.shell];
  }

  private configStep(kind: string, value: string): Outcome {
    this.key = stepKey(this.key, kind, value);
    return { cached: null, layer: null };
  }

  /** A layer step: the cached layer when the key is known, else what `make` builds (null: no layer needed). */
  private async layerStep(key: string, make: () => Promise<string | null>): Promise<Outcome> {
    this.key = key;
    const hit = this.options.noCache === true ? undefined : await this.cache.get(key);
    if (hit !== undefined) {
      if (hit.layer !== null) this.layers.push(hit.layer);
      return { cached: true, layer: hit.layer };
    }
    const layer = await make();
    await this.cache.put(key, layer);
    if (layer !== null) this.layers.push(layer);
    return { cached: false, layer };
  }

  private async from(rawImage: string, line: number): Promise<Outcome> {
    const globals = new Map<string, string>();
    for (const { name, value } of this.globalArgs) {
      const given = this.buildArg(name) ?? (value === undefined ? undefined : processWord(value, globals));
      if (given !== undefined) globals.set(name, given);
    }
    const image = processWord(rawImage, globals);
    if (image === 'scratch') return this.configStep('FROM', 'scratch');
    const debian = parseDebianRef(image);
    if (debian !== undefined) {
      this.config.env = [DEBIAN_PATH];
      this.config.cmd = ['bash'];
      const mirror = this.options.mirror ?? (await hostDebianMirror());
      return this.layerStep(stepKey('', 'FROM debian', debian.suite, debian.slim ? 'slim' : 'full', mirror ?? 'mmdebstrap default'), () => this.bootstrap(debian, mirror));
    }
    let base: ImageManifest;
    try {
      base = await this.store.getImage(image);
    } catch (error) {
      if (error instanceof BrigError && error.code === 'BRIG_IMAGE_NOT_FOUND') {
        throw new BrigError('BRIG_IMAGE_NOT_FOUND', `Dockerfile line ${line}: FROM ${image}: no such image in brig's store, and brig has no registry to pull it from`, `FROM takes debian:SUITE (bootstrapped from the Debian mirror), debian:SUITE-slim, scratch or a brig image; ${error.hint}`);
      }
      throw error;
    }
    this.layers = [...base.layers];
    this.config = structuredClone(base.config);
    this.key = stepKey('', 'FROM image', JSON.stringify(base.layers), JSON.stringify(base.config));
    return { cached: null, layer: null };
  }

  private async bootstrap(base: DebianBase, mirror: string | undefined): Promise<string> {
    const { output, signal } = this.options;
    output(`bootstrapping Debian ${base.suite}${base.slim ? ' (slim)' : ''} with mmdebstrap from ${mirror ?? 'its default mirror'}\n`);
    const run = bootstrapDebian(base, mirror, output);
    // the tar is cut too: whatever mmdebstrap still writes never becomes a layer
    const stop = (): void => {
      run.kill();
      run.tar.destroy();
    };
    signal?.addEventListener('abort', stop);
    try {
      const [imported, exit] = await Promise.allSettled([this.store.importLayer(run.tar), run.exit]);
      if (exit.status === 'rejected' || exit.value !== 0) {
        const why = exit.status === 'rejected' ? String(exit.reason) : `exit ${exit.value ?? 'killed'}`;
        throw new BrigError('BRIG_BUILD_FAILED', `mmdebstrap failed (${why}) bootstrapping Debian ${base.suite}`, 'its output is above; check the suite name and that the mirror is reachable (brig uses the Debian mirror of the host\'s apt sources); mmdebstrap must be installed (scripts/setup.sh) and run as root');
      }
      if (imported.status === 'rejected') throw imported.reason;
      const { dropped, digest } = imported.value;
      // mmdebstrap's /dev nodes and set-id bits: the extractor drops them, a sandbox brings its own /dev
      if (dropped.length > 0) output(`${dropped.length} entries dropped or changed by the extractor (device nodes, set-id bits)\n`);
      return digest;
    } finally {
      signal?.removeEventListener('abort', stop);
      run.kill();
    }
  }

  private async view(): Promise<ImageView> {
    const layers = [];
    for (const digest of this.layers) layers.push({ dir: this.store.layerPath(digest), whiteouts: (await this.store.layer(digest))?.whiteouts ?? [] });
    return new ImageView(layers);
  }

  /** A fresh directory in the store's tmp/, removed when `use` is done, whatever happens. */
  private async withTemp<T>(use: (dir: string) => Promise<T>): Promise<T> {
    const dir = this.store.tempPath('build');
    await fs.mkdir(dir, { mode: 0o700 });
    try {
      return await use(dir);
    } finally {
      await removeTree(dir);
    }
  }

  private async workdir(path: string): Promise<Outcome> {
    const absolute = posix.resolve(this.config.workdir, path);
    this.config.workdir = absolute;
    const view = await this.view();
    const resolved = await view.resolve(absolute);
    if ((await view.lstat(resolved))?.stats.isDirectory() === true || resolved === '/') return this.configStep('WORKDIR', absolute);
    // as BuildKit: a WORKDIR that does not exist is created, owned by the current USER
    const owner = await resolveIds(this.config.user, view, true);
    return this.layerStep(stepKey(this.key, 'WORKDIR', resolved, `${owner.uid}:${owner.gid}`), () =>
      this.withTemp(async (temp) => {
        const stage = new Stage(join(temp, 'root'), view);
        await fs.mkdir(stage.root, { mode: 0o755 });
        await stage.ensureDir(resolved, owner);
        await stage.finish();
        return (await commitDirectory(this.store, stage.root, 0)).digest;
      }),
    );
  }

  private async run(command: CommandForm, flag: 'default' | 'none' | 'host' | undefined, line: number, step: number): Promise<Outcome> {
    const allowed = this.options.network ?? 'mirror';
    if (flag === 'host' && allowed !== 'host') throw invalidAt(line, 'RUN --network=host needs the build to allow it', 'build with `brig image build --network host` to let steps reach the host\'s network');
    const network = flag === 'none' ? 'none' : flag === 'host' ? 'host' : allowed;
    const argv = this.argv(command);
    const env: Record<string, string> = {};
    for (const [name, value] of this.args) if (value !== undefined) env[name] = value;
    for (const [name, value] of envMap(this.config.env)) env[name] = value;
    const { workdir, user } = this.config;
    const key = stepKey(this.key, 'RUN', JSON.stringify({ argv, env, workdir, user, network }));
    return this.layerStep(key, () =>
      this.withTemp(async (temp) => {
        const runStep = this.options.runStep;
        if (runStep === undefined) throw new BrigError('BRIG_BUILD_FAILED', `step ${step} is a RUN, and this build has no way to run it`, 'RUN steps need a jail runner; build with the brig CLI or the daemon');
        const upper = join(temp, 'upper');
        const work = join(temp, 'work');
        await fs.mkdir(upper, { mode: 0o755 });
        await fs.mkdir(work, { mode: 0o700 });
        let tail = Buffer.alloc(0);
        const output = (chunk: Buffer): void => {
          this.options.output(chunk);
          tail = Buffer.concat([tail, chunk]).subarray(-FAILED_TAIL_BYTES);
        };
        const layers = await Promise.all(this.layers.map((digest) => this.store.layerDir(digest)));
        const result = await runStep({ layers, upper, work, command: argv, env, workdir, user, network, output, ...(this.options.signal ? { signal: this.options.signal } : {}) });
        if (aborted(this.options.signal)) throw interrupted(step);
        if (result.exitCode !== 0) {
          const lines = tail.toString('utf8').trimEnd().split('\n').slice(-20).join('\n');
          throw new BrigError('BRIG_BUILD_FAILED', `step ${step} (RUN, Dockerfile line ${line}) exited with code ${result.exitCode}${lines === '' ? '' : `; its last output:\n${lines}`}`, 'fix the command and build again: the steps before it come from the cache');
        }
        if ((await fs.readdir(upper)).length === 0) return null;
        return (await commitDirectory(this.store, upper, result.idOffset)).digest;
      }),
    );
  }

  private async copy(instruction: Instruction & { kind: 'COPY' | 'ADD' }): Promise<Outcome> {
    const vars = this.vars();
    const destText = processWord(instruction.dest, vars);
    const chown = instruction.chown === undefined ? undefined : processWord(instruction.chown, vars);
    const sources: Source[] = [];
    for (const raw of instruction.sources) {
      for (const rel of await expandSource(this.context, processWord(raw, vars), this.ignore)) sources.push(await listSource(this.context, rel, this.ignore));
    }
    const intoDir = destText.endsWith('/') || destText.endsWith('/.') || destText === '.';
    if (sources.length > 1 && !intoDir) throw invalidAt(instruction.line, `${instruction.kind} of several sources needs a destination directory ending in /`, `${instruction.kind} a b /dest/`);
    const dest = posix.resolve(this.config.workdir, destText);
    const archives = new Set<string>();
    if (instruction.kind === 'ADD') for (const source of sources) if (!source.isDir && (await isLocalArchive(join(this.context, source.rel)))) archives.add(source.rel);
    const what = JSON.stringify({ sources: sources.map((one) => one.rel), dest, intoDir, chown, chmod: instruction.chmod, archives: [...archives] });
    const key = stepKey(this.key, instruction.kind, what, await hashSources(this.context, sources));
    return this.layerStep(key, () =>
      this.withTemp(async (temp) => {
        const view = await this.view();
        const owner: Ids = chown === undefined ? { uid: 0, gid: 0 } : await resolveIds(chown, view, false);
        const stage = new Stage(join(temp, 'root'), view);
        await fs.mkdir(stage.root, { mode: 0o755 });
        const target = await view.resolve(dest);
        for (const [index, source] of sources.entries()) {
          if (archives.has(source.rel)) {
            // ADD of a local tar: unpacked by the hostile-safe extractor, then merged in
            const unpacked = join(temp, `archive-${index}`);
            await extractLayer(join(this.context, source.rel), unpacked);
            await stage.ensureDir(target, owner);
            await stage.merge(unpacked, target);
          } else if (source.isDir) {
            await stage.copy(this.context, source, target, owner, instruction.chmod);
          } else {
            const into = intoDir || (await stage.isDir(target));
            await stage.copy(this.context, source, into ? posix.join(target, posix.basename(source.rel)) : target, owner, instruction.chmod);
          }
        }
        await stage.finish();
        return (await commitDirectory(this.store, stage.root, 0)).digest;
      }),
    );
  }

  /** The line printed when a step ends. */
  async stepLine(outcome: Outcome, seconds: number): Promise<string> {
    const time = `${seconds.toFixed(1)}s`;
    if (outcome.cached === null) return ` ---> ${time}\n`;
    const size = outcome.layer === null ? 'no layer' : `${outcome.layer.slice(7, 19)} ${formatBytes((await this.store.layer(outcome.layer))?.bytes ?? 0)}`;
    return ` ---> ${outcome.cached ? 'CACHED ' : ''}${size}, ${time}\n`;
  }

  warnUnusedArgs(): void {
    for (const name of Object.keys(this.options.buildArgs ?? {})) {
      if (!this.usedBuildArgs.has(name)) this.options.output(`warning: --build-arg ${name} was not used: the Dockerfile declares no ARG ${name}\n`);
    }
  }
}

/** KEY=value lines as a map, in order. */
function envMap(env: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of env) {
    const equals = line.indexOf('=');
    if (equals > 0) map.set(line.slice(0, equals), line.slice(equals + 1));
  }
  return map;
}
