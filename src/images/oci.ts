/**
 * The JSON of image archives, checked before anything is believed: OCI's
 * image layout (oci-layout, index.json, manifests, configs; image-spec
 * v1.1) and `docker save`'s manifest.json. Every field brig reads has its
 * type checked; a digest is sha256 and 64 hex digits, so a blob path built
 * from it is `blobs/sha256/<hex>` and nothing else; counts are bounded.
 * Anything else is BRIG_ARCHIVE_INVALID naming the field.
 */
import { invalid } from './tar.ts';
import { MAX_IMAGE_LAYERS } from './names.ts';
import type { ImageConfig } from './store.ts';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** Layer media types whose blob is a tar or a tar.gz (the extractor tells them apart by their bytes). */
const TAR_LAYERS = new Set([
  MEDIA.layer,
  MEDIA.layerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

/** Bounds on what an archive may declare. */
export const ARCHIVE_LIMITS = {
  /** Bytes of one JSON file (index, manifest, config). */
  maxJsonBytes: 4 * 2 ** 20,
  /** Images in one archive. */
  maxImages: 64,
  /** Layers of one image: what a sandbox boots from. */
  maxLayers: MAX_IMAGE_LAYERS,
};

export const DIGEST = /^sha256:([0-9a-f]{64})$/;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
  platform?: { os: string; architecture: string };
}

export interface OciManifest {
  config: Descriptor;
  layers: Descriptor[];
}

export interface DockerSaveImage {
  config: string;
  repoTags: string[];
  layers: string[];
}

export interface ParsedConfig {
  config: ImageConfig;
  /** rootfs.diff_ids: each layer's digest, uncompressed. */
  diffIds: string[];
}

export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw invalid(`${what} is not JSON: ${(error as Error).message}`);
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${what} is not a JSON object`);
  return value as Json;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalid(`${what} is not a string`);
  return value;
}

function strings(value: unknown, what: string, max = 100_000): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) throw invalid(`${what} is not an array of strings`);
  if (value.length > max) throw invalid(`${what} has more than ${max} items`);
  return value as string[];
}

function array(value: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(value)) throw invalid(`${what} is not an array`);
  if (value.length > max) throw invalid(`${what} has more than ${max} items`);
  return value;
}

function stringMap(value: unknown, what: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  const map = object(value, what);
  for (const [key, item] of Object.entries(map)) string(item, `${what}[${JSON.stringify(key)}]`);
  return { ...(map as Record<string, string>) };
}

export function digestHex(digest: string, what: string): string {
  const hex = DIGEST.exec(digest)?.[1];
  if (hex === undefined) throw invalid(`${what} ${JSON.stringify(digest)} is not sha256: and 64 lowercase hex digits`, 'brig reads blobs only as blobs/sha256/<64 hex>; the archive is refused whole');
  return hex;
}

export function parseDescriptor(value: unknown, what: string): Descriptor {
  const json = object(value, what);
  const digest = string(json.digest, `${what}.digest`);
  digestHex(digest, `${what}.digest`);
  const size = json.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${what}.size is not a byte count`);
  const descriptor: Descriptor = { mediaType: string(json.mediaType, `${what}.mediaType`), digest, size, annotations: stringMap(json.annotations, `${what}.annotations`) };
  if (json.platform !== undefined) {
    const platform = object(json.platform, `${what}.platform`);
    descriptor.platform = { os: string(platform.os, `${what}.platform.os`), architecture: string(platform.architecture, `${what}.platform.architecture`) };
  }
  return descriptor;
}

export function parseLayout(value: unknown): void {
  const version = string(object(value, 'oci-layout').imageLayoutVersion, 'oci-layout.imageLayoutVersion');
  if (!/^1\.\d+\.\d+$/.test(version)) throw invalid(`oci-layout version ${JSON.stringify(version)} is not 1.x`);
}

/** index.json, or a nested index: its manifest descriptors. */
export function parseIndex(value: unknown, what: string): Descriptor[] {
  const json = object(value, what);
  if (json.schemaVersion !== 2) throw invalid(`${what}.schemaVersion is not 2`);
  return array(json.manifests, `${what}.manifests`, ARCHIVE_LIMITS.maxImages).map((item, index) => parseDescriptor(item, `${what}.manifests[${index}]`));
}

export function isIndex(mediaType: string): boolean {
  return mediaType === MEDIA.index || mediaType === MEDIA.dockerList;
}

export function isManifest(mediaType: string): boolean {
  return mediaType === MEDIA.manifest || mediaType === MEDIA.dockerManifest;
}

export function parseManifest(value: unknown, what: string): OciManifest {
  const json = object(value, what);
  if (json.schemaVersion !== 2) throw invalid(`${what}.schemaVersion is not 2`);
  const config = parseDescriptor(json.config, `${what}.config`);
  const layers = array(json.layers, `${what}.layers`, ARCHIVE_LIMITS.maxLayers).map((item, index) => parseDescriptor(item, `${what}.layers[${index}]`));
  for (const [index, layer] of layers.entries()) {
    if (!TAR_LAYERS.has(layer.mediaType)) {
      throw invalid(`${what}.layers[${index}] is ${JSON.stringify(layer.mediaType)}, not a tar or tar+gzip layer`, 'brig reads tar and gzip-compressed tar layers; re-export the image without zstd (docker save, or skopeo copy with --dest-compress-format gzip)');
    }
  }
  return { config, layers };
}

/** A docker save member: `<hex>/layer.tar`, `<hex>.json` (Docker before 25) or `blobs/sha256/<hex>` (Docker 25 on). */
const DOCKER_PATH = /^(?:[0-9a-f]{64}\/layer\.tar|[0-9a-f]{64}\.json|blobs\/sha256\/[0-9a-f]{64})$/;

export function dockerPath(value: unknown, what: string): string {
  const path = string(value, what);
  if (!DOCKER_PATH.test(path)) throw invalid(`${what} ${JSON.stringify(path)} is not a docker save member name (<hex>/layer.tar, <hex>.json or blobs/sha256/<hex>)`);
  return path;
}

export function parseDockerManifest(value: unknown): DockerSaveImage[] {
  return array(value, 'manifest.json', ARCHIVE_LIMITS.maxImages).map((item, index) => {
    const what = `manifest.json[${index}]`;
    const json = object(item, what);
    return {
      config: dockerPath(json.Config, `${what}.Config`),
      repoTags: json.RepoTags === null || json.RepoTags === undefined ? [] : strings(json.RepoTags, `${what}.RepoTags`, 1000),
      layers: array(json.Layers, `${what}.Layers`, ARCHIVE_LIMITS.maxLayers).map((layer, at) => dockerPath(layer, `${what}.Layers[${at}]`)),
    };
  });
}

function command(value: unknown, what: string): string[] | null {
  if (value === undefined || value === null) return null;
  return [...strings(value, what)];
}

/** An image config (OCI's, which docker save writes too) as the store's ImageConfig, and its diff_ids. */
export function parseConfig(value: unknown): ParsedConfig {
  const json = object(value, 'the image config');
  const rootfs = object(json.rootfs, 'the image config\'s rootfs');
  if (rootfs.type !== 'layers') throw invalid('the image config\'s rootfs.type is not "layers"');
  const diffIds = strings(rootfs.diff_ids, 'the image config\'s rootfs.diff_ids', ARCHIVE_LIMITS.maxLayers);
  for (const diffId of diffIds) digestHex(diffId, 'a rootfs.diff_ids entry');
  const inner = json.config === undefined || json.config === null ? {} : object(json.config, 'the image config\'s config');
  const env = inner.Env === undefined || inner.Env === null ? [] : strings(inner.Env, 'config.Env');
  for (const pair of env) if (!pair.includes('=') || pair.startsWith('=')) throw invalid(`config.Env has ${JSON.stringify(pair)}, not KEY=value`);
  const workdir = inner.WorkingDir === undefined || inner.WorkingDir === null ? '' : string(inner.WorkingDir, 'config.WorkingDir');
  const user = inner.User === undefined || inner.User === null ? '' : string(inner.User, 'config.User');
  return {
    config: {
      env: [...env],
      // Docker treats a relative WorkingDir as relative to /
      workdir: workdir === '' ? '/' : workdir.startsWith('/') ? workdir : `/${workdir}`,
      user: user === '' ? 'root' : user,
      cmd: command(inner.Cmd, 'config.Cmd'),
      entrypoint: command(inner.Entrypoint, 'config.Entrypoint'),
      labels: stringMap(inner.Labels, 'config.Labels'),
    },
    diffIds: [...diffIds],
  };
}

/** Node's process.arch as OCI's architecture names it. */
export function ociArchitecture(): string {
  const names: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return names[process.arch] ?? process.arch;
}
