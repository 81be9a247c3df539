import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BrigError, defaultStateDir, isBrigError } from '../protocol/index.ts';
import { allowHosts, buildPolicy, hostNetwork, noNetwork, resolvePolicy, runAs, user, workspace, type PolicyChange } from '../policy/index.ts';
import { IMAGE_ID_COUNT, imageIdBase, type ImageRoot } from '../drivers/index.ts';
import { DEFAULT_TAG, buildImage, isBuiltInTemplate, mirrorHosts, openImageStore, parseRef, processLeaseHolder, templateDockerfile, type ImageConfig, type RunStep, type RunStepResult, type StepRunner } from '../images/index.ts';
import { runPolicy, type RunContext } from './run.ts';

/**
 * Image jails outside the daemon: `brig run --image` and the RUN steps of
 * `brig image build`. Each gets its mount points in a fresh directory under
 * /tmp (bubblewrap, as the jail's own ids, must reach them) and an id range
 * of the top ones, above where the daemon's sandboxes take theirs
 * (daemon/sandboxes/host-ids.ts), picked by this process's pid.
 */

const CLI_SLOTS = { first: 65_000, count: 500 };

function cliIdBase(): number {
  return imageIdBase(CLI_SLOTS.first + (process.pid % CLI_SLOTS.count)) as number;
}

/**
 * The store's image `ref` as a root for one foreground jail; its writes are
 * dropped when fn returns. A built-in template not built yet is built first,
 * its progress on stderr.
 */
export async function withRunImage<T>(ref: string, fn: (image: ImageRoot, config: ImageConfig) => Promise<T>, context: RunContext & { templatesDir: string; mapsIds: boolean }): Promise<T> {
  if (process.getuid?.() !== 0) throw new BrigError('BRIG_IMAGE_NEEDS_ROOT', `--image ${ref}: an image jail maps a range of ids and mounts the image's layers, which needs root`, 'run brig as root (sudo brig run --image …)');
  const store = await openImageStore(join(defaultStateDir(), 'images'));
  const manifest = await store.getImage(ref).catch(async (error: unknown) => {
    const { name, tag } = parseRef(ref);
    if (!isBrigError(error) || error.code !== 'BRIG_IMAGE_NOT_FOUND' || tag !== DEFAULT_TAG || !isBuiltInTemplate(name)) throw error;
    process.stderr.write(`brig: the ${name} template is not built yet: building it now (once; brig image build ${name} does it ahead)\n`);
    const output = (chunk: string | Buffer): boolean => process.stderr.write(chunk);
    const built = await buildImage({ store, dockerfile: await templateDockerfile(name, context.templatesDir), context: context.templatesDir, tag: name, runStep: imageStepRunner(context), output });
    return built.image;
  });
  const layers = await Promise.all(manifest.layers.map((digest) => store.layerDir(digest)));
  const holder = processLeaseHolder('run');
  await store.lease(holder, manifest.layers);
  const dir = mkdtempSync('/tmp/brig-image-');
  try {
    chmodSync(dir, 0o711);
    // A tier that maps no ids (gVisor) gives the image's files their own ids on the host: no range.
    const image: ImageRoot = { layers, dir: `${dir}/mnt`, rwDir: `${dir}/rw`, idBase: context.mapsIds ? cliIdBase() : 0, idCount: IMAGE_ID_COUNT };
    return await fn(image, manifest.config);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await store.release(holder);
  }
}

/** The runner `brig image build` gives the builder: each RUN step in an image jail over the layers so far. */
export function imageStepRunner(context: RunContext): StepRunner {
  return async (step: RunStep): Promise<RunStepResult> => {
    const rwDir = dirname(step.upper);
    if (basename(step.upper) !== 'upper' || step.work !== join(rwDir, 'work')) {
      throw new BrigError('BRIG_INTERNAL', 'a RUN step\'s upper and work directories must be siblings named upper and work', 'this is a bug in the builder');
    }
    const dir = mkdtempSync('/tmp/brig-step-');
    try {
      chmodSync(dir, 0o711);
      const image: ImageRoot = { layers: step.layers, dir: `${dir}/mnt`, rwDir, idBase: cliIdBase(), idCount: IMAGE_ID_COUNT };
      const policy = resolvePolicy(
        buildPolicy(
          workspace(null),
          ...identityChanges(step.user),
          // Only the image's ENV and ARGs, nothing of the builder's own; /tmp is the image's, so what a step leaves there is in its layer (as in docker build).
          (base) => ({ ...base, environment: { forward: [], set: step.env }, filesystem: { ...base.filesystem, tmpfs: [] } }),
          ...(await networkChanges(step.network)),
        ),
        { cwd: '/', home: '/root' },
      );
      const exitCode = await runPolicy(policy, step.command, { ...context, cwd: '/', home: '/root', dryRun: false, json: false, image, output: step.output, workdir: step.workdir, signal: step.signal });
      return { exitCode, idOffset: image.idBase };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** USER as Docker reads it: root, a name, uid, or uid:gid. */
function identityChanges(who: string): PolicyChange[] {
  const ids = /^(\d+)(?::(\d+))?$/.exec(who);
  if (ids) return [runAs(Number(ids[1]), ids[2] === undefined ? null : Number(ids[2]))];
  if (who === '' || who === 'root') return [runAs(0, 0), user('root', '/root')];
  return [runAs(null, null), user(who, null)];
}

async function networkChanges(network: RunStep['network']): Promise<PolicyChange[]> {
  if (network === 'host') return [hostNetwork()];
  if (network === 'none') return [noNetwork()];
  return [allowHosts(...(await mirrorHosts()))];
}
