import { chmodSync, mkdirSync } from 'node:fs';
import { prepareUpper } from '../host/index.ts';
import type { ImageRoot } from '../plan/index.ts';

/**
 * A jail whose root is an image's: its layers, read-only and shared, under a
 * copy-on-write upper directory of its own. brig-exec (native/spawn/image-root.c)
 * builds it as host root just before bubblewrap starts: a user namespace that
 * maps ids 0 … idCount-1 onto idBase …, each layer id-mapped through it, an
 * overlay of them all in a mount namespace of its own (gone with the jail,
 * never seen by the host), then it drops to idBase. bubblewrap joins that
 * namespace (--userns) and binds the overlay as / (--bind-fd).
 */

/** Makes the directories brig-exec mounts on, and the upper (its root belongs to the sandbox's root, idBase on the host). */
export function prepareImageRoot(image: ImageRoot): void {
  prepareUpper(image, image.idBase);
  // 0711: bubblewrap, as the sandbox's base id, resolves the path of root/ (its realpath) but lists nothing here.
  mkdirSync(image.dir, { mode: 0o711, recursive: true });
  chmodSync(image.dir, 0o711);
  mkdirSync(`${image.dir}/root`, { mode: 0o700 });
  mkdirSync(`${image.dir}/l`, { mode: 0o700 });
  // w/0: where the workspace's id-mapped mount is attached; bubblewrap, as the jail's ids, resolves its path.
  mkdirSync(`${image.dir}/w`, { mode: 0o711 });
  mkdirSync(`${image.dir}/w/0`, { mode: 0o700 });
  image.layers.forEach((_, index) => mkdirSync(`${image.dir}/l/${index}`, { mode: 0o700 }));
}

/** A host directory bound id-mapped: its owner's files are the jail user's inside (brig-exec's --map-bind). */
export interface MappedBind {
  /** The plan fd of the directory (opened without following links). */
  source: string;
  /** The slot brig-exec puts the mapped mount on, which bubblewrap binds. */
  target: string;
  hostUid: number;
  hostGid: number;
}

/**
 * brig-exec's options for it. `targets`: every path bubblewrap mounts on
 * inside the root, which brig-exec walks once the overlay is up, refusing an
 * image with a link on the way (bubblewrap would follow it, even to
 * /oldroot/…, the host's root while it sets up: the image is hostile).
 */
export function imageRootArgs(image: ImageRoot, owner: { uid: number; gid: number }, fds: { userns: string; root: string }, binds: MappedBind[] = [], targets: string[] = []): string[] {
  return [
    '--image-dir', image.dir,
    '--rw-dir', image.rwDir,
    ...image.layers.flatMap((layer) => ['--layer', layer]),
    '--idmap', `${image.idBase}:${image.idCount}`,
    '--owner', `${owner.uid}:${owner.gid}`,
    ...binds.flatMap((bind) => ['--map-bind', `${bind.source}:${bind.target}:${bind.hostUid}:${bind.hostGid}`]),
    ...[...new Set(targets)].flatMap((target) => ['--no-link-at', target]),
    '--userns-fd', fds.userns,
    '--root-fd', fds.root,
  ];
}

