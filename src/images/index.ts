/**
 * images/: the image store, to come piece by piece (issue 11). For now it
 * offers the safe extractor every layer goes through: extractLayer unpacks a
 * hostile tar or tar.gz into a fresh directory, never writing outside it, and
 * reports what it dropped and which whiteouts it saw (docs/images.md).
 */
export { DEFAULT_LIMITS, extractLayer } from './archive.ts';
export type { ExtractLimits, ExtractResult } from './archive.ts';
