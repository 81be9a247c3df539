import { readFileSync, writeFileSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import { MAX_IMAGE_LAYERS, commitDirectoryAs, parseRef, type ImageConfig, type ImageManifest, type ImageStore } from '../../images/index.ts';

/**
 * `brig commit` and E2B's createSnapshot(): a running image sandbox's root
 * as a new image, the layers it booted from plus one layer of what it wrote
 * (its overlay's upper directory), with the config of the image it booted
 * from. The sandbox keeps running while its upper is read, as with
 * `docker commit`: a consistent copy is the caller's concern (stop writing,
 * sync), not brig's.
 *
 * A record stores only the image's reference (policy.image), which may be
 * retagged while the sandbox runs; so at boot the image's layers, its config
 * and the sandbox's id range are written down beside its workspace
 * (<sandbox dir>/image.json, root's, 0600, never visible inside), and a
 * commit builds on what the sandbox really runs on.
 */

/** What an image sandbox booted from, as written at boot. */
export interface ImageSource {
  /** The reference it was created with (name:tag). */
  ref: string;
  /** The layer digests of that image when it booted, lowest first. */
  layers: string[];
  config: ImageConfig;
  /** Host id of the sandbox's uid 0: its upper's files belong to idBase + the id inside. */
  idBase: number;
}


const sourceFile = (sandboxDir: string): string => `${sandboxDir}/image.json`;

export function writeImageSource(sandboxDir: string, source: ImageSource): void {
  writeFileSync(sourceFile(sandboxDir), JSON.stringify(source) + '\n', { mode: 0o600 });
}

/** The source written at boot; null when the sandbox has none (a host-view sandbox, or one booted by a brig that did not write it). */
export function readImageSource(sandboxDir: string): ImageSource | null {
  let text: string;
  try {
    text = readFileSync(sourceFile(sandboxDir), 'utf8');
  } catch {
    return null;
  }
  const value = JSON.parse(text) as ImageSource;
  if (!Array.isArray(value.layers) || typeof value.idBase !== 'number' || typeof value.config !== 'object') return null;
  return value;
}

export interface CommitRequest {
  /** The sandbox's id, for messages and labels. */
  sandbox: string;
  /** Its directory (<state>/sandboxes/<id>): image.json is there, and workspace/upper. */
  sandboxDir: string;
  /** Whether the sandbox booted from an image (its policy's image is not null). */
  fromImage: boolean;
  /** NAME or NAME:TAG of the new image; an existing one of that name and tag is replaced. */
  ref: string;
  /** Labels added to the source image's. */
  labels?: Record<string, string>;
}

export interface CommitResult {
  image: ImageManifest;
  /** The new top layer's digest. */
  layer: string;
  /** Entries of the upper dir the store refused or changed (devices, set-id bits), as importLayer reports them. */
  dropped: Array<{ path: string; why: string }>;
}

export async function commitSandbox(images: ImageStore | undefined, request: CommitRequest): Promise<CommitResult> {
  if (!request.fromImage) {
    throw new BrigError(
      'BRIG_COMMIT_UNSUPPORTED',
      `sandbox '${request.sandbox}' sees the host's own view, not an image: it has no root of its own to commit`,
      'create the sandbox from an image (brig create --image NAME, or Sandbox.create(\'NAME\')), then commit it',
    );
  }
  if (!images) throw new BrigError('BRIG_IMAGE_NEEDS_ROOT', `commit of sandbox '${request.sandbox}': the image store needs the daemon to run as root`, 'start brig serve as root');
  // Checked before the upper dir is read: a bad name fails at once, not after a long copy.
  const { name, tag } = parseRef(request.ref);
  const source = readImageSource(request.sandboxDir);
  if (source === null) {
    throw new BrigError('BRIG_COMMIT_UNSUPPORTED', `sandbox '${request.sandbox}' has no record of the image layers it booted from (it was started by an older brig)`, 'create a new sandbox from the image and commit that one');
  }
  if (source.layers.length + 1 > MAX_IMAGE_LAYERS) {
    throw new BrigError(
      'BRIG_COMMIT_UNSUPPORTED',
      `sandbox '${request.sandbox}' runs on ${source.layers.length} layers: a commit would make ${source.layers.length + 1}, more than the ${MAX_IMAGE_LAYERS} a sandbox can boot from`,
      'flatten its files into a fresh image instead: copy them out (brig cp) and build from a Dockerfile, or import a root filesystem tarball (brig image import)',
    );
  }
  for (const digest of source.layers) {
    if ((await images.layer(digest)) === undefined) {
      throw new BrigError('BRIG_IMAGE_NOT_FOUND', `sandbox '${request.sandbox}' booted from ${source.ref}, whose layer ${digest} is no longer in the store (the image was removed and pruned)`, 'commit needs the layers the sandbox runs on: keep its image until the commit is done');
    }
  }
  const config: ImageConfig = { ...source.config, labels: { ...source.config.labels, ...request.labels } };
  const { layer, image } = await commitDirectoryAs(images, `${request.sandboxDir}/workspace/upper`, source.idBase, { name, tag, layers: source.layers, config });
  return { image, layer: layer.digest, dropped: layer.dropped };
}
