/**
 * images/: the image store, to come piece by piece (issue 11). It offers the
 * safe extractor every layer goes through (extractLayer unpacks a hostile tar
 * or tar.gz into a fresh directory, never writing outside it) and the store
 * built on it: layers by the sha256 of their tar, named and tagged images,
 * shared-layer accounting and prune (docs/images.md).
 */
export { DEFAULT_LIMITS, extractLayer } from './archive.ts';
export type { ExtractLimits, ExtractResult } from './archive.ts';
export { DEFAULT_TAG, parseRef } from './names.ts';
export type { ImageRef } from './names.ts';
export { ImageStore, openImageStore } from './store.ts';
export type { ImageConfig, ImageManifest, ImageSummary, ImportedLayer, LayerInfo, PruneResult } from './store.ts';
