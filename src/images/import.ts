/**
 * importArchive: a `docker save` archive, an OCI image layout (a directory
 * or a tar of one) or a plain root filesystem tarball into the store. The
 * archive is hostile (docs/images.md, "Import and export"): its JSON is
 * checked field by field (oci.ts), a blob is read only as
 * `blobs/sha256/<64 hex>` (or docker save's `<hex>/layer.tar`, `<hex>.json`)
 * through real directories and an O_NOFOLLOW open, every OCI blob's sha256
 * and size must match its descriptor, and every layer's diffID the config's
 * rootfs.diff_ids. An image archive that is a tar is first unpacked into
 * the store's tmp/ by the same extractor as any layer, so its members cannot
 * land anywhere else. Nothing is tagged unless everything checked out; a
 * layer this import added is removed again when it fails.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BrigError } from '../protocol/index.ts';
import { cleanName, extractLayer, type ExtractLimits } from './archive.ts';
import { removeTree } from './files.ts';
import { parseRef, type ImageRef } from './names.ts';
import {
  ARCHIVE_LIMITS,
  digestHex,
  isIndex,
  isManifest,
  ociArchitecture,
  parseConfig,
  parseDockerManifest,
  parseIndex,
  parseJson,
  parseLayout,
  parseManifest,
  type Descriptor,
} from './oci.ts';
import type { ImageConfig, ImageManifest, ImageStore, ImportedLayer } from './store.ts';
import { BLOCK, ByteReader, invalid, openArchive, padding, parseHeader, parsePax } from './tar.ts';

export interface ImportOptions {
  /** NAME[:TAG] for the image; needed for a root filesystem tarball or an archive that names none; only for an archive of one image. */
  ref?: string;
  limits?: Partial<ExtractLimits>;
}

export type ArchiveFormat = 'docker-save' | 'oci' | 'rootfs';

export interface ArchiveImport {
  format: ArchiveFormat;
  images: ImageManifest[];
  layers: ImportedLayer[];
  /** Entries dropped or changed in the archive itself and in its layers (layer digest, or 'archive'), to show as a warning. */
  dropped: Array<{ layer: string; path: string; why: string }>;
}

/** Where a layer's bytes come from, and what they must hash to before they are believed. */
interface LayerSource {
  path: string;
  /** An OCI blob's descriptor digest and size; docker save's legacy layer.tar has none (its diffID checks it). */
  blob?: { digest: string; size: number };
}

interface PlannedImage {
  refs: ImageRef[];
  config: ImageConfig;
  diffIds: string[];
  layers: LayerSource[];
}

/** Runs with the store's write lock held (store.importArchive). */
export async function importArchiveLocked(store: ImageStore, path: string, options: ImportOptions = {}): Promise<ArchiveImport> {
  const given = options.ref === undefined ? undefined : parseRef(options.ref);
  const info = await fs.stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw invalid(`the archive ${path} does not exist`, 'check the path');
    throw error;
  });
  const dropped: ArchiveImport['dropped'] = [];
  let root = path;
  let unpacked: string | undefined;
  try {
    if (!info.isDirectory()) {
      if (!(await isImageArchive(path, options.limits))) return await importRootfs(store, path, given, options.limits);
      unpacked = store.tempPath();
      const outer = await extractLayer(path, unpacked, options.limits);
      for (const one of outer.dropped) dropped.push({ layer: 'archive', ...one });
      root = unpacked;
    }
    const format: ArchiveFormat = (await exists(root, 'oci-layout')) ? 'oci' : 'docker-save';
    if (format === 'docker-save' && !(await exists(root, 'manifest.json'))) {
      throw invalid(`${path} is a directory without oci-layout or manifest.json`, 'give an OCI image layout directory, or a tar file (docker save, an OCI layout tar, or a root filesystem)');
    }
    const planned = format === 'oci' ? await planOci(root, given) : await planDockerSave(root, given);
    return { ...(await importPlanned(store, root, planned, dropped)), format };
  } finally {
    if (unpacked !== undefined) await removeTree(unpacked);
  }
}

async function importRootfs(store: ImageStore, path: string, ref: ImageRef | undefined, limits?: Partial<ExtractLimits>): Promise<ArchiveImport> {
  if (ref === undefined) throw new BrigError('BRIG_IMAGE_INVALID', `${path} is a root filesystem tarball, which names no image`, 'give it a name: brig image import FILE -t NAME[:TAG]');
  const layer = await store.importLayerLocked(path, limits);
  try {
    const image = await store.tagImageLocked(ref.name, ref.tag, { layers: [layer.digest] });
    return { format: 'rootfs', images: [image], layers: [layer], dropped: layer.dropped.map((one) => ({ layer: layer.digest, ...one })) };
  } catch (error) {
    if (!layer.existed) await store.discardLayerLocked(layer.digest);
    throw error;
  }
}

async function importPlanned(store: ImageStore, root: string, planned: PlannedImage[], dropped: ArchiveImport['dropped']): Promise<Omit<ArchiveImport, 'format'>> {
  // every blob first: one that lies about its digest refuses the archive before any layer is unpacked
  for (const image of planned) for (const layer of image.layers) if (layer.blob) await verifyBlob(root, layer.path, layer.blob.digest, layer.blob.size);
  const added: string[] = [];
  const layers: ImportedLayer[] = [];
  try {
    for (const image of planned) {
      for (const [index, source] of image.layers.entries()) {
        const handle = await openInside(root, source.path);
        const layer = await store.importLayerLocked(handle.createReadStream() as Readable);
        if (!layer.existed) added.push(layer.digest);
        if (layer.digest !== image.diffIds[index]) {
          throw invalid(`layer ${index} (${source.path}) unpacks to ${layer.digest}, but the image config says ${image.diffIds[index]}`, 'the archive was changed after it was made, or its config lies; it is refused whole');
        }
        if (!layers.some((one) => one.digest === layer.digest)) {
          layers.push(layer);
          for (const one of layer.dropped) dropped.push({ layer: layer.digest, ...one });
        }
      }
    }
    const images: ImageManifest[] = [];
    for (const image of planned) {
      for (const ref of image.refs) images.push(await store.tagImageLocked(ref.name, ref.tag, { layers: image.diffIds, config: image.config }));
    }
    return { images, layers, dropped };
  } catch (error) {
    for (const digest of added) await store.discardLayerLocked(digest);
    throw error;
  }
}

// ---- docker save ----

async function planDockerSave(root: string, given: ImageRef | undefined): Promise<PlannedImage[]> {
  const manifest = parseDockerManifest(await readJsonInside(root, 'manifest.json', 'manifest.json'));
  if (given !== undefined && manifest.length !== 1) throw manyImages(manifest.length);
  const planned: PlannedImage[] = [];
  for (const [index, image] of manifest.entries()) {
    const bytes = await readInside(root, image.config);
    const hex = /^(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(image.config)?.[1];
    // the config's name is its digest in both layouts: check it
    if (hex !== undefined && sha256(bytes) !== hex) throw invalid(`manifest.json[${index}].Config ${image.config} does not hash to its name`, 'the archive was changed after it was made; it is refused whole');
    const { config, diffIds } = parseConfig(parseJson(bytes, image.config));
    if (diffIds.length !== image.layers.length) throw invalid(`manifest.json[${index}] lists ${image.layers.length} layers, its config ${diffIds.length} diff_ids`);
    const layers: LayerSource[] = [];
    for (const [at, path] of image.layers.entries()) {
      // Docker 25's blobs/sha256/<hex> layer is the uncompressed tar: its name is its diffID
      if (path.startsWith('blobs/')) layers.push({ path, blob: { digest: `sha256:${path.slice('blobs/sha256/'.length)}`, size: -1 } });
      else layers.push({ path: await dedupedLayer(root, path, `manifest.json[${index}].Layers[${at}]`) });
    }
    const refs = given !== undefined ? [given] : repoTags(image.repoTags);
    if (refs.length === 0) throw unnamed(`image ${index} of manifest.json has no RepoTags`);
    planned.push({ refs, config, diffIds, layers });
  }
  return planned;
}

/**
 * Docker before 25 writes a layer it already wrote as a symlink,
 * `<id>/layer.tar -> ../<other id>/layer.tar`: that one link, relative and
 * to another member of that exact form, is followed; the member it names is
 * then opened like any other (never through a link).
 */
async function dedupedLayer(root: string, path: string, what: string): Promise<string> {
  const info = await fs.lstat(join(root, path)).catch(() => null);
  if (info === null || !info.isSymbolicLink()) return path;
  const target = await fs.readlink(join(root, path));
  const resolved = /^\.\.\/([0-9a-f]{64}\/layer\.tar)$/.exec(target)?.[1];
  if (resolved === undefined) throw invalid(`${what} ${path} is a symlink to ${JSON.stringify(target)}, not to another layer of the archive (../<id>/layer.tar)`);
  return resolved;
}

function repoTags(tags: string[]): ImageRef[] {
  const refs: ImageRef[] = [];
  for (const tag of tags) {
    try {
      refs.push(parseRef(tag.replace(/^docker\.io\/(library\/)?/, '')));
    } catch {
      // a name brig cannot hold (a registry with a port, say): the image keeps its other names, or needs -t
    }
  }
  return refs;
}

// ---- OCI image layout ----

async function planOci(root: string, given: ImageRef | undefined): Promise<PlannedImage[]> {
  parseLayout(await readJsonInside(root, 'oci-layout', 'oci-layout'));
  const top = parseIndex(await readJsonInside(root, 'index.json', 'index.json'), 'index.json');
  const chosen: Array<{ descriptor: Descriptor; names: Record<string, string> }> = [];
  for (const descriptor of top) {
    if (isManifest(descriptor.mediaType)) chosen.push({ descriptor, names: descriptor.annotations });
    else if (isIndex(descriptor.mediaType)) {
      const nested = parseIndex(await readBlobJson(root, descriptor, 'a nested index'), 'a nested index');
      chosen.push({ descriptor: pickPlatform(nested), names: descriptor.annotations });
    } else throw invalid(`index.json names a ${JSON.stringify(descriptor.mediaType)}, neither an image manifest nor an index`);
  }
  if (chosen.length === 0) throw invalid('index.json names no image');
  if (given !== undefined && chosen.length !== 1) throw manyImages(chosen.length);
  const planned: PlannedImage[] = [];
  for (const [index, { descriptor, names }] of chosen.entries()) {
    const manifest = parseManifest(await readBlobJson(root, descriptor, `manifest ${index}`), `manifest ${index}`);
    const { config, diffIds } = parseConfig(await readBlobJson(root, manifest.config, `the config of manifest ${index}`));
    if (diffIds.length !== manifest.layers.length) throw invalid(`manifest ${index} lists ${manifest.layers.length} layers, its config ${diffIds.length} diff_ids`);
    const layers = manifest.layers.map((layer) => ({ path: `blobs/sha256/${digestHex(layer.digest, 'a layer digest')}`, blob: { digest: layer.digest, size: layer.size } }));
    const ref = given ?? ociRef(names);
    if (ref === undefined) throw unnamed(`manifest ${index} in index.json has no io.containerd.image.name or NAME:TAG org.opencontainers.image.ref.name annotation`);
    planned.push({ refs: [ref], config, diffIds, layers });
  }
  return planned;
}

function ociRef(annotations: Record<string, string>): ImageRef | undefined {
  for (const value of [annotations['io.containerd.image.name'], annotations['org.opencontainers.image.ref.name']]) {
    // a bare ref.name is a tag ("latest"), not a name
    if (value === undefined || !value.includes(':')) continue;
    try {
      return parseRef(value.replace(/^docker\.io\/(library\/)?/, ''));
    } catch {
      // not a name brig can hold: try the next, or ask for -t
    }
  }
  return undefined;
}

/** The manifest of a multi-platform index for this host (linux and its architecture). */
function pickPlatform(manifests: Descriptor[]): Descriptor {
  const arch = ociArchitecture();
  const match = manifests.find((one) => isManifest(one.mediaType) && one.platform?.os === 'linux' && one.platform.architecture === arch);
  if (match !== undefined) return match;
  const platforms = manifests.map((one) => (one.platform ? `${one.platform.os}/${one.platform.architecture}` : 'unknown')).join(', ');
  throw invalid(`the image has no manifest for linux/${arch} (it has ${platforms || 'none'})`, 'export the image for this host\'s platform');
}

// ---- reading inside the archive, never through a link ----

/** The archive's file at `rel` (a checked relative name), opened without following any symlink on the way. */
async function openInside(root: string, rel: string): Promise<FileHandle> {
  const parts = rel.split('/');
  let at = root;
  for (const part of parts.slice(0, -1)) {
    at = join(at, part);
    const info = await fs.lstat(at).catch(() => null);
    if (info === null) throw invalid(`the archive has no ${rel}`);
    if (!info.isDirectory()) throw invalid(`the archive's ${rel} passes through ${part}, which is not a directory (a symlink is never followed)`);
  }
  let handle: FileHandle;
  try {
    handle = await fs.open(join(root, rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw invalid(`the archive has no ${rel}`);
    if (code === 'ELOOP') throw invalid(`the archive's ${rel} is a symlink, which is never followed`);
    throw error;
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    throw invalid(`the archive's ${rel} is not a regular file`);
  }
  return handle;
}

async function readInside(root: string, rel: string): Promise<Buffer> {
  const handle = await openInside(root, rel);
  try {
    const { size } = await handle.stat();
    if (size > ARCHIVE_LIMITS.maxJsonBytes) throw invalid(`the archive's ${rel} is ${size} bytes, more than the ${ARCHIVE_LIMITS.maxJsonBytes} a JSON file may have`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

async function readJsonInside(root: string, rel: string, what: string): Promise<unknown> {
  return parseJson(await readInside(root, rel), what);
}

/** A JSON blob, believed only when its size and sha256 are its descriptor's. */
async function readBlobJson(root: string, descriptor: Descriptor, what: string): Promise<unknown> {
  if (descriptor.size > ARCHIVE_LIMITS.maxJsonBytes) throw invalid(`${what} declares ${descriptor.size} bytes, more than the ${ARCHIVE_LIMITS.maxJsonBytes} a JSON file may have`);
  const rel = `blobs/sha256/${digestHex(descriptor.digest, `${what}'s digest`)}`;
  const bytes = await readInside(root, rel);
  if (bytes.length !== descriptor.size || `sha256:${sha256(bytes)}` !== descriptor.digest) throw lying(rel, descriptor.digest);
  return parseJson(bytes, what);
}

/** A layer blob's sha256 and size (size -1: not declared), streamed. */
async function verifyBlob(root: string, rel: string, digest: string, size: number): Promise<void> {
  const handle = await openInside(root, rel);
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of handle.createReadStream()) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  if ((size !== -1 && length !== size) || `sha256:${hash.digest('hex')}` !== digest) throw lying(rel, digest);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function exists(root: string, name: string): Promise<boolean> {
  return (await fs.lstat(join(root, name)).catch(() => null)) !== null;
}

function lying(rel: string, digest: string): BrigError {
  return invalid(`the archive's ${rel} does not match its descriptor (${digest}): its size or sha256 differs`, 'the archive was changed after it was made, or lies about its contents; it is refused whole');
}

function unnamed(what: string): BrigError {
  return new BrigError('BRIG_IMAGE_INVALID', `${what}, so brig does not know what to call it`, 'give it a name: brig image import FILE -t NAME[:TAG]');
}

function manyImages(count: number): BrigError {
  return new BrigError('BRIG_IMAGE_INVALID', `the archive holds ${count} images; -t names one`, 'import it without -t to keep the names it carries');
}

/**
 * Whether a tar is an image archive (it has manifest.json or oci-layout at
 * its top) rather than a root filesystem: the headers are read, data
 * skipped, nothing written.
 */
async function isImageArchive(path: string, limits: Partial<ExtractLimits> = {}): Promise<boolean> {
  const maxEntries = limits.maxEntries ?? 1_000_000;
  const source = createReadStream(path);
  const chunks = await openArchive(source);
  try {
    const bytes = new ByteReader(chunks);
    let pax = new Map<string, string>();
    let longName: string | undefined;
    for (let entries = 0; entries < maxEntries; entries++) {
      const block = await bytes.take(BLOCK);
      if (block === null) return false;
      const header = parseHeader(block);
      if (header === null) return false;
      const meta = header.type === 'x' || header.type === 'g' || header.type === 'L' || header.type === 'K';
      const size = !meta && pax.has('size') ? Number(pax.get('size')) : header.size;
      if (!Number.isSafeInteger(size) || size < 0) throw invalid('a pax size is not a number');
      if (meta && size > (limits.maxPaxBytes ?? 2 ** 20)) throw invalid(`a ${header.type} header of ${size} bytes passes the limit (maxPaxBytes)`);
      if (meta) {
        const data = await bytes.need(size);
        await bytes.need(padding(size));
        if (header.type === 'x') pax = parsePax(data);
        else if (header.type === 'L') longName = data.toString('utf8').replace(/\0+$/, '');
        continue;
      }
      const clean = cleanName(pax.get('path') ?? longName ?? header.name);
      pax = new Map();
      longName = undefined;
      if ('path' in clean && (clean.path === 'manifest.json' || clean.path === 'oci-layout') && header.type === '0') return true;
      await bytes.skip(size);
      await bytes.need(padding(size));
    }
    throw invalid(`the archive has more than ${maxEntries} entries (limit maxEntries)`);
  } finally {
    await chunks.return?.();
    source.destroy();
  }
}
