/**
 * exportOci: an image of the store as an OCI image layout (image-spec v1.1),
 * a directory or, when `out` ends in .tar, a tar of one. Each layer is
 * layerTar of its directory (gzip optional), so its diffID is the sha256 of
 * that tar: importing the export gives back layers with exactly these
 * digests, and a layer that was itself made by layerTar (a build step, a
 * commit, an earlier export) keeps its digest through the round trip. The
 * layout is built beside `out` and renamed into place, so `out` is whole or
 * absent.
 */
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { BrigError } from '../protocol/index.ts';
import { randomName, removeTree } from './files.ts';
import { layerTar } from './layer-tar.ts';
import { formatRef } from './names.ts';
import { MEDIA, ociArchitecture } from './oci.ts';
import type { ImageStore } from './store.ts';

export interface ExportOptions {
  /** Compress each layer (tar+gzip); the default writes plain tar layers. @default false */
  gzip?: boolean;
}

export interface ExportResult {
  out: string;
  /** The image manifest's digest, as index.json names it. */
  manifest: string;
  /** Each layer, lowest first: its blob's digest and size, and its diffID (the uncompressed tar's digest). */
  layers: Array<{ digest: string; size: number; diffId: string }>;
}

interface Blob {
  digest: string;
  size: number;
}

export async function exportOci(store: ImageStore, ref: string, out: string, options: ExportOptions = {}): Promise<ExportResult> {
  const image = await store.getImage(ref);
  if ((await fs.lstat(out).catch(() => null)) !== null) throw new BrigError('BRIG_USAGE', `${out} exists`, 'export writes a new directory or .tar file: give a path that does not exist yet');
  const asTar = out.endsWith('.tar');
  // beside out, so the last step is a rename on one filesystem
  const work = join(dirname(out), `.${basename(out)}.${randomName()}.partial`);
  try {
    await fs.mkdir(join(work, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    const layers: ExportResult['layers'] = [];
    for (const digest of image.layers) {
      const diff = createHash('sha256');
      const blob = await writeBlob(work, [layerTar(await store.layerDir(digest)), hashing(diff), ...(options.gzip === true ? [createGzip()] : [])]);
      layers.push({ ...blob, diffId: `sha256:${diff.digest('hex')}` });
    }
    const config = await writeJsonBlob(work, {
      created: image.created,
      architecture: ociArchitecture(),
      os: 'linux',
      config: {
        Env: image.config.env,
        WorkingDir: image.config.workdir,
        User: image.config.user,
        Cmd: image.config.cmd,
        Entrypoint: image.config.entrypoint,
        Labels: image.config.labels,
      },
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    });
    const layerType = options.gzip === true ? MEDIA.layerGzip : MEDIA.layer;
    const manifest = await writeJsonBlob(work, {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, ...config },
      layers: layers.map((layer) => ({ mediaType: layerType, digest: layer.digest, size: layer.size })),
    });
    await fs.writeFile(join(work, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [{
        mediaType: MEDIA.manifest,
        ...manifest,
        platform: { os: 'linux', architecture: ociArchitecture() },
        annotations: { 'io.containerd.image.name': formatRef(image), 'org.opencontainers.image.ref.name': image.tag },
      }],
    };
    await fs.writeFile(join(work, 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
    if (asTar) {
      const partial = `${work}.tar`;
      try {
        await pipeline(layerTar(work), createWriteStream(partial, { flags: 'wx', mode: 0o644 }));
        await fs.rename(partial, out);
      } finally {
        await fs.rm(partial, { force: true });
      }
    } else {
      await fs.rename(work, out);
    }
    return { out, manifest: manifest.digest, layers };
  } finally {
    await removeTree(work);
  }
}

/** A pass-through that hashes what passes. */
function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/** Streams `source → …transforms` into blobs/sha256/<its digest>. */
async function writeBlob(work: string, [source, ...transforms]: [Readable, ...Transform[]]): Promise<Blob> {
  const hash = createHash('sha256');
  let size = 0;
  const counting = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const temp = join(work, 'blobs', `.${randomName()}`);
  await pipeline([source, ...transforms, counting, createWriteStream(temp, { flags: 'wx', mode: 0o644 })]);
  const digest = `sha256:${hash.digest('hex')}`;
  await fs.rename(temp, join(work, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  return { digest, size };
}

async function writeJsonBlob(work: string, value: unknown): Promise<Blob> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await fs.writeFile(join(work, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes, { mode: 0o644 });
  return { digest, size: bytes.length };
}
