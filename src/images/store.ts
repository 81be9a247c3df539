/**
 * The image store: content-addressed layers and named, tagged images, in a
 * directory the caller gives (under brig's state dir). Layout and rules are in
 * docs/images.md, "The store":
 *
 *   layers/<hex>/       a layer's files, root mode 0555, immutable by convention
 *   layers/<hex>.json   its metadata (size, whiteouts, dropped entries); a layer
 *                       exists only when both are there
 *   images.json         every image's manifest, replaced atomically
 *   tmp/                extractions and build steps under way, named for their process; an open clears those of dead processes
 *   leases/<holder>.json layers in use by a sandbox, a jail or a build: prune keeps them
 *   lock                flock'd by whoever writes (lock.ts)
 *
 * One process writes a store at a time (the daemon, or a CLI): every write
 * (import, tag, rm, prune, recover) holds the flock on `lock`; readers do
 * not lock, since everything they read appears whole.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { BrigError, processAlive } from '../protocol/index.ts';
import type { ExtractLimits } from './archive.ts';
import { extractDigested } from './digest.ts';
import { randomName, readJson, removeTree, writeJsonAtomic } from './files.ts';
import { importArchiveLocked, type ArchiveImport, type ImportOptions } from './import.ts';
import { ifStoreUnlocked, withStoreLock } from './lock.ts';
import { MAX_IMAGE_LAYERS, checkName, checkTag, formatRef, parseRef } from './names.ts';

export interface ImageConfig {
  /** KEY=value, as Docker's config.Env. */
  env: string[];
  /** @default '/' */
  workdir: string;
  /** @default 'root' */
  user: string;
  cmd: string[] | null;
  entrypoint: string[] | null;
  labels: Record<string, string>;
}

export interface ImageManifest {
  name: string;
  tag: string;
  /** Layer digests ("sha256:<hex>"), lowest first. */
  layers: string[];
  config: ImageConfig;
  /** ISO 8601, when the image was tagged. */
  created: string;
}

export interface LayerInfo {
  digest: string;
  /** Bytes of file data the layer holds. */
  bytes: number;
  /** Bytes of its uncompressed tar stream. */
  tarBytes: number;
  files: number;
  dropped: Array<{ path: string; why: string }>;
  whiteouts: string[];
  created: string;
}

export interface ImportedLayer {
  digest: string;
  bytes: number;
  dropped: Array<{ path: string; why: string }>;
  whiteouts: string[];
  /** True when the store already held this layer and the new copy was discarded. */
  existed: boolean;
}

export interface ImageSummary {
  name: string;
  tag: string;
  layers: number;
  /** Bytes of all its layers. */
  size: number;
  /** Bytes of its layers that another image uses too. */
  shared: number;
  created: string;
}

export interface PruneResult {
  /** Digests of the layers removed. */
  layers: string[];
  /** Bytes of file data they held. */
  bytes: number;
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const HEX = /^[0-9a-f]{64}$/;

export class ImageStore {
  private readonly layersDir: string;
  private readonly tmpDir: string;
  private readonly indexFile: string;
  private readonly leasesDir: string;
  /** This process's writes, one after another, each under the store's flock. */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string) {
    this.layersDir = join(dir, 'layers');
    this.tmpDir = join(dir, 'tmp');
    this.indexFile = join(dir, 'images.json');
    this.leasesDir = join(dir, 'leases');
  }

  /** Runs `work` after this process's earlier writes, holding the store's write lock (waiting while another process holds it). */
  protected write<T>(work: () => Promise<T>): Promise<T> {
    const next = this.writes.then(() => withStoreLock(this.dir, work));
    this.writes = next.catch(() => undefined);
    return next;
  }

  /** A fresh path in the store's tmp/ (same filesystem as the layers), named for this process: removed by an open once this process is gone. */
  tempPath(what = 'temp'): string {
    return join(this.tmpDir, `${process.pid}-${what}-${randomName()}`);
  }

  /**
   * Imports a `docker save` archive, an OCI image layout (directory or tar) or
   * a root filesystem tarball (import.ts), tagging what it names or `ref`;
   * all of it under one hold of the write lock, so no prune runs between its
   * layers and its tags.
   */
  importArchive(path: string, options: ImportOptions = {}): Promise<ArchiveImport> {
    return this.write(() => importArchiveLocked(this, path, options));
  }

  /** Unpacks a tar or tar.gz layer; a layer the store already holds is kept once. */
  importLayer(archive: string | Readable, limits: Partial<ExtractLimits> = {}): Promise<ImportedLayer> {
    return this.write(() => this.importLayerLocked(archive, limits));
  }

  /** importLayer, then the tag `then` names (with the new layer's digest), under one hold of the write lock: no prune between them. */
  importLayerAndTag(archive: string | Readable, then: (digest: string) => { name: string; tag: string; layers: string[]; config?: Partial<ImageConfig> }): Promise<{ layer: ImportedLayer; image: ImageManifest }> {
    return this.write(async () => {
      const layer = await this.importLayerLocked(archive);
      const { name, tag, ...manifest } = then(layer.digest);
      try {
        return { layer, image: await this.tagImageLocked(name, tag, manifest) };
      } catch (error) {
        if (!layer.existed) await this.discardLayerLocked(layer.digest);
        throw error;
      }
    });
  }

  /** importLayer for a caller that holds the write lock already. */
  async importLayerLocked(archive: string | Readable, limits: Partial<ExtractLimits> = {}): Promise<ImportedLayer> {
    const temp = this.tempPath();
    try {
      const result = await extractDigested(archive, temp, limits);
      const hex = result.digest.slice('sha256:'.length);
      const report = { digest: result.digest, bytes: result.bytes, dropped: result.dropped, whiteouts: result.whiteouts };
      if ((await this.layer(result.digest)) !== undefined) return { ...report, existed: true };
      const info: LayerInfo = { ...report, tarBytes: result.tarBytes, files: result.files, created: new Date().toISOString() };
      const target = join(this.layersDir, hex);
      // a directory without its .json is a crash's leftover (or a concurrent import): replace it
      await removeTree(target);
      await fs.rename(temp, target);
      await fs.chmod(target, 0o555);
      // the .json last: until it exists the layer does not
      await writeJsonAtomic(`${target}.json`, info);
      return { ...report, existed: false };
    } finally {
      await removeTree(temp);
    }
  }

  /** A layer's metadata, or undefined when the store does not hold it. */
  async layer(digest: string): Promise<LayerInfo | undefined> {
    const hex = DIGEST.exec(digest)?.[1];
    if (hex === undefined) return undefined;
    return (await readJson(join(this.layersDir, `${hex}.json`))) as LayerInfo | undefined;
  }

  /** The host directory of a layer's files (read-only; nothing may write there). */
  layerPath(digest: string): string {
    const hex = DIGEST.exec(digest)?.[1];
    if (hex === undefined) throw new BrigError('BRIG_IMAGE_INVALID', `${JSON.stringify(digest)} is not a layer digest`, 'a digest is sha256: and 64 lowercase hex digits');
    return join(this.layersDir, hex);
  }

  /** The absolute host directory of a layer the store holds, to stack as an overlay lowerdir; BRIG_IMAGE_NOT_FOUND when it holds none of that digest. */
  async layerDir(digest: string): Promise<string> {
    if ((await this.layer(digest)) === undefined) {
      throw new BrigError('BRIG_IMAGE_NOT_FOUND', `the store holds no layer ${JSON.stringify(digest)}`, 'a layer exists once imported (brig image import) or built; prune removes layers no image names');
    }
    return resolve(this.layerPath(digest));
  }

  /** Names `name:tag` for a manifest of layers the store holds; replaces what had that name and tag. */
  tagImage(name: string, tag: string, manifest: { layers: string[]; config?: Partial<ImageConfig> }): Promise<ImageManifest> {
    return this.write(() => this.tagImageLocked(name, tag, manifest));
  }

  /** tagImage for a caller that holds the write lock already. */
  async tagImageLocked(name: string, tag: string, manifest: { layers: string[]; config?: Partial<ImageConfig> }): Promise<ImageManifest> {
    checkName(name);
    checkTag(tag);
    if (manifest.layers.length > MAX_IMAGE_LAYERS) {
      throw new BrigError('BRIG_IMAGE_INVALID', `${name}:${tag} would have ${manifest.layers.length} layers, more than the ${MAX_IMAGE_LAYERS} a sandbox boots from`, 'squash steps (fewer RUN and COPY instructions), or commit from an image with fewer layers');
    }
    for (const digest of manifest.layers) {
      if ((await this.layer(digest)) === undefined) {
        throw new BrigError('BRIG_IMAGE_INVALID', `the manifest for ${name}:${tag} names layer ${JSON.stringify(digest)}, which the store does not hold`, 'import the layer first (importLayer), then tag the image');
      }
    }
    const config = manifest.config ?? {};
    const image: ImageManifest = {
      name,
      tag,
      layers: [...manifest.layers],
      config: {
        env: [...(config.env ?? [])],
        workdir: config.workdir ?? '/',
        user: config.user ?? 'root',
        cmd: config.cmd ? [...config.cmd] : null,
        entrypoint: config.entrypoint ? [...config.entrypoint] : null,
        labels: { ...(config.labels ?? {}) },
      },
      created: new Date().toISOString(),
    };
    await this.change((images) => [...images.filter((other) => other.name !== name || other.tag !== tag), image]);
    return image;
  }

  /** The manifest of "name" (tag latest) or "name:tag"; BRIG_IMAGE_NOT_FOUND lists what exists. */
  async getImage(ref: string): Promise<ImageManifest> {
    const wanted = parseRef(ref);
    const images = await this.readIndex();
    const image = images.find((one) => one.name === wanted.name && one.tag === wanted.tag);
    if (image === undefined) throw notFound(formatRef(wanted), images);
    return image;
  }

  /** The images' names and tags, from the index alone: no layer's metadata is read (a daemon asks on every create). */
  async imageNames(): Promise<Array<{ name: string; tag: string }>> {
    return (await this.readIndex()).map((image) => ({ name: image.name, tag: image.tag }));
  }

  async listImages(): Promise<ImageSummary[]> {
    const images = await this.readIndex();
    const users = new Map<string, number>();
    for (const image of images) for (const digest of new Set(image.layers)) users.set(digest, (users.get(digest) ?? 0) + 1);
    const summaries: ImageSummary[] = [];
    for (const image of images) {
      let size = 0;
      let shared = 0;
      for (const digest of new Set(image.layers)) {
        const bytes = (await this.layer(digest))?.bytes ?? 0;
        size += bytes;
        if ((users.get(digest) ?? 0) > 1) shared += bytes;
      }
      summaries.push({ name: image.name, tag: image.tag, layers: image.layers.length, size, shared, created: image.created });
    }
    return summaries.sort((a, b) => formatRef(a).localeCompare(formatRef(b)));
  }

  /** Removes the name and tag; its layers stay until prune. */
  removeImage(ref: string): Promise<ImageManifest> {
    const wanted = parseRef(ref);
    return this.write(() => this.removeImageLocked(wanted));
  }

  private async removeImageLocked(wanted: { name: string; tag: string }): Promise<ImageManifest> {
    let removed: ImageManifest | undefined;
    await this.change((images) => {
      removed = images.find((one) => one.name === wanted.name && one.tag === wanted.tag);
      if (removed === undefined) throw notFound(formatRef(wanted), images);
      return images.filter((one) => one !== removed);
    });
    return removed as ImageManifest;
  }

  /** Removes every layer no image names (and leftovers of crashed imports). */
  prune(): Promise<PruneResult> {
    return this.write(() => this.pruneLocked());
  }

  private async pruneLocked(): Promise<PruneResult> {
    const result: PruneResult = { layers: [], bytes: 0 };
    await this.change(async (images) => {
      const used = new Set([...images.flatMap((image) => image.layers), ...(await this.leasedLayers())]);
      for (const name of await fs.readdir(this.layersDir)) {
        const hex = name.endsWith('.json') ? name.slice(0, -5) : undefined;
        if (hex === undefined || !HEX.test(hex) || used.has(`sha256:${hex}`)) continue;
        const info = await this.layer(`sha256:${hex}`);
        await this.removeLayer(hex);
        result.layers.push(`sha256:${hex}`);
        result.bytes += info?.bytes ?? 0;
      }
      return images;
    });
    return result;
  }

  /**
   * Holds `layers` against prune for as long as `holder` uses them (a
   * sandbox booted from them, a jail of `brig run --image`, a build between
   * its steps): a running overlay whose lower layer is deleted loses its
   * files. Holders are [a-z0-9-] names; `pid-<pid>-…` ones lapse with that
   * process, the others (the daemon's sandbox ids) last until released.
   */
  lease(holder: string, layers: string[]): Promise<void> {
    if (!/^[a-z0-9-]{1,96}$/.test(holder)) return Promise.reject(new BrigError('BRIG_INTERNAL', `lease holder '${holder}' must be 1-96 of [a-z0-9-]`, 'this is a bug in the caller'));
    return this.write(async () => {
      await fs.mkdir(this.leasesDir, { recursive: true, mode: 0o700 });
      // Whole or absent, but not synced: a lease matters only while its holder runs, and a host crash ends those.
      await writeJsonAtomic(join(this.leasesDir, `${holder}.json`), { layers }, { durable: false });
    });
  }

  release(holder: string): Promise<void> {
    return this.write(() => fs.rm(join(this.leasesDir, `${holder}.json`), { force: true }));
  }

  /** Holders with a lease, for a daemon to drop those of sandboxes it no longer has. */
  async leaseHolders(): Promise<string[]> {
    const names = await fs.readdir(this.leasesDir).catch(() => [] as string[]);
    return names.filter((name) => name.endsWith('.json')).map((name) => name.slice(0, -5));
  }

  /** Layers some live holder leases; a pid-… lease whose process is gone is removed on the way. */
  private async leasedLayers(): Promise<Set<string>> {
    const leased = new Set<string>();
    for (const holder of await this.leaseHolders()) {
      const pid = /^pid-(\d+)-/.exec(holder)?.[1];
      if (pid !== undefined && !processAlive(Number(pid))) {
        await fs.rm(join(this.leasesDir, `${holder}.json`), { force: true });
        continue;
      }
      const lease = (await readJson(join(this.leasesDir, `${holder}.json`)).catch(() => undefined)) as { layers?: unknown } | undefined;
      if (Array.isArray(lease?.layers)) for (const digest of lease.layers) if (typeof digest === 'string') leased.add(digest);
    }
    return leased;
  }

  /** The .json first, so a crash midway leaves a directory without metadata, which open() removes. */
  private async removeLayer(hex: string): Promise<void> {
    await fs.rm(join(this.layersDir, `${hex}.json`), { force: true });
    await removeTree(join(this.layersDir, hex));
  }

  private async readIndex(): Promise<ImageManifest[]> {
    const index = (await readJson(this.indexFile)) as { images?: ImageManifest[] } | undefined;
    return index?.images ?? [];
  }

  /** Read, change, replace the index; the caller holds the write lock. */
  private async change(edit: (images: ImageManifest[]) => ImageManifest[] | Promise<ImageManifest[]>): Promise<void> {
    const before = await this.readIndex();
    const after = await edit(before);
    if (after !== before) await writeJsonAtomic(this.indexFile, { images: after });
  }

  /** Removes a layer this call path imported (existed: false) and no image names yet, when what it was for failed; the caller holds the write lock. */
  async discardLayerLocked(digest: string): Promise<void> {
    const hex = DIGEST.exec(digest)?.[1];
    if (hex === undefined) return;
    const used = (await this.readIndex()).some((image) => image.layers.includes(digest));
    if (!used) await this.removeLayer(hex);
  }

  /**
   * Clears tmp/ of what no live process owns, and removes half-made or
   * half-removed layers: a directory without its .json, a .json without its
   * directory. The caller holds the write lock. A build writes its steps in
   * tmp/ without that lock (for minutes): its entries, named for its pid,
   * stay while it runs, so `brig image ls` during a build cannot pull them
   * from under it.
   */
  async recover(): Promise<void> {
    for (const name of await fs.readdir(this.tmpDir)) {
      const owner = /^(\d+)-/.exec(name);
      if (owner && processAlive(Number(owner[1]))) continue;
      await removeTree(join(this.tmpDir, name));
    }
    const names = new Set(await fs.readdir(this.layersDir));
    for (const name of names) {
      const path = join(this.layersDir, name);
      if (HEX.test(name) && names.has(`${name}.json`)) continue;
      if (name.endsWith('.json') && HEX.test(name.slice(0, -5)) && names.has(name.slice(0, -5))) continue;
      await removeTree(path);
    }
    for (const name of await fs.readdir(this.dir)) if (name.endsWith('.tmp')) await fs.rm(join(this.dir, name), { force: true });
  }
}

function notFound(ref: string, images: ImageManifest[]): BrigError {
  const names = images.map(formatRef).sort();
  const hint = names.length === 0 ? 'the store has no images yet' : `images in the store: ${names.join(', ')}`;
  return new BrigError('BRIG_IMAGE_NOT_FOUND', `no image ${ref} in the store`, hint);
}

/** Opens (creating, mode 0700) the store in `dir` and, when no other process is writing it, clears what a crash left behind. */
export async function openImageStore(dir: string): Promise<ImageStore> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.mkdir(join(dir, 'layers'), { recursive: true, mode: 0o700 });
  await fs.mkdir(join(dir, 'tmp'), { recursive: true, mode: 0o700 });
  const store = new ImageStore(dir);
  // a store another process is writing has its tmp/ in use: its leftovers wait for the next open that finds it idle
  await ifStoreUnlocked(dir, () => store.recover());
  return store;
}

/** A lease holder that lapses with this process: `pid-<pid>-<what>-<random>`. */
export function processLeaseHolder(what: string): string {
  return `pid-${process.pid}-${what}-${randomName()}`;
}

