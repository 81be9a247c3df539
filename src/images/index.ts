/**
 * images/: the image store (issue 11). It offers the
 * safe extractor every layer goes through (extractLayer unpacks a hostile tar
 * or tar.gz into a fresh directory, never writing outside it) and the store
 * built on it: layers by the sha256 of their tar, named and tagged images,
 * shared-layer accounting and prune, and the way back: layerTar writes a
 * layer or a sandbox's upper dir as a tar, commitDirectory stores it as a
 * layer; store.importArchive takes docker save archives, OCI layouts and
 * root filesystem tarballs, exportOci writes an OCI layout; buildImage
 * builds a Dockerfile (or a built-in template) into the store, its RUN steps
 * run by a StepRunner the caller injects (docs/images.md).
 */
export { DEFAULT_LIMITS, extractLayer } from './archive.ts';
export type { ExtractLimits, ExtractResult } from './archive.ts';
export { exportOci } from './export.ts';
export type { ExportOptions, ExportResult } from './export.ts';
export type { ArchiveFormat, ArchiveImport, ImportOptions } from './import.ts';
export { commitDirectory, commitDirectoryAs, layerTar } from './layer-tar.ts';
export type { LayerTarOptions } from './layer-tar.ts';
export { DEFAULT_TAG, MAX_IMAGE_LAYERS, parseRef } from './names.ts';
export type { ImageRef } from './names.ts';
export { ImageStore, openImageStore, processLeaseHolder } from './store.ts';
export type { ImageConfig, ImageManifest, ImageSummary, ImportedLayer, LayerInfo, PruneResult } from './store.ts';
export { buildImage } from './build.ts';
export type { BuildOptions, BuildResult, StepReport } from './build.ts';
export type { RunStep, RunStepResult, StepRunner } from './build-types.ts';
export { parseDockerfile } from './dockerfile.ts';
export { BUILT_IN_TEMPLATES, READY_PORT_LABEL, START_LABEL, isBuiltInTemplate, templateDockerfile } from './templates.ts';
export type { TemplateName } from './templates.ts';
export { mirrorHosts } from './debian.ts';
