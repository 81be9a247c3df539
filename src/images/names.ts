/**
 * Image names, tags and references, checked like Docker's: a name is
 * lowercase components separated by '/', a tag is up to 128 word characters,
 * dots and dashes. Names never become paths (the store keeps them in one
 * index file), but '..' and empty components are refused all the same.
 */
import { BrigError } from '../protocol/index.ts';

export const DEFAULT_TAG = 'latest';
const MAX_NAME = 255;
const NAME = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface ImageRef {
  name: string;
  tag: string;
}

function bad(message: string): BrigError {
  return new BrigError(
    'BRIG_IMAGE_INVALID',
    message,
    'a name is lowercase letters, digits and ._- in components separated by / (up to 255 characters); a tag is letters, digits and _.- (up to 128, not starting with . or -); a reference is NAME or NAME:TAG',
  );
}

export function checkName(name: string): string {
  if (name.length > MAX_NAME || !NAME.test(name)) throw bad(`${JSON.stringify(name)} is not a valid image name`);
  return name;
}

export function checkTag(tag: string): string {
  if (!TAG.test(tag)) throw bad(`${JSON.stringify(tag)} is not a valid image tag`);
  return tag;
}

/** "name" or "name:tag" (the tag after the last ':' that follows the last '/'); no tag means latest. */
export function parseRef(ref: string): ImageRef {
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return { name: checkName(ref.slice(0, colon)), tag: checkTag(ref.slice(colon + 1)) };
  return { name: checkName(ref), tag: DEFAULT_TAG };
}

export function formatRef({ name, tag }: ImageRef): string {
  return `${name}:${tag}`;
}

/** The most layers an image may have: what a sandbox boots from (brig-exec's IMAGE_MAX_LAYERS, native/spawn/image-root.h); Docker's own limit is 127. */
export const MAX_IMAGE_LAYERS = 128;
