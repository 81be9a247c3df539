import { chmodSync, chownSync, lstatSync, mkdirSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import type { ImageRoot } from '../plan/index.ts';

/**
 * An image root's writable half, as every tier's overlay wants it: rwDir/work
 * empty, and rwDir/upper, whose root is the sandbox's / — the mode of the
 * image's own / and owned by root inside, which is `rootId` on the host (the
 * jail maps ids: its range's base; gVisor maps none: 0).
 */
export function prepareUpper(image: ImageRoot, rootId: number): void {
  if (image.layers.length === 0) throw new BrigError('BRIG_IMAGE_INVALID', 'an image with no layers has no root filesystem', 'build the image FROM a Debian suite or an image with files');
  if (/[,:\\]/.test(image.rwDir)) throw new BrigError('BRIG_STATE_DIR', `the sandbox directory ${image.rwDir} has a ',' ':' or '\\' in its path, which overlayfs cannot take`, 'give brig serve a --state directory without them');
  // The caller may have made them (a build step's, in the store's tmp): empty either way.
  mkdirSync(`${image.rwDir}/work`, { mode: 0o700, recursive: true });
  const upper = `${image.rwDir}/upper`;
  mkdirSync(upper, { mode: 0o755, recursive: true });
  chmodSync(upper, (lstatSync(image.layers[image.layers.length - 1] as string).mode & 0o777) | 0o755);
  chownSync(upper, rootId, rootId);
}
