/**
 * layerTar: a directory (a layer, or a sandbox's overlay upper dir) back to
 * a tar stream, the reverse of extractLayer and byte for byte stable:
 * extracting its output and writing the result again gives the same bytes,
 * so the same digest.
 *
 * - Order: each directory's entries sorted by the bytes of their names, a
 *   directory before what it holds.
 * - ustar headers; pax records for what does not fit (a path past ustar's
 *   prefix/name split, a link target past 100 bytes, a size of 8 GiB or more).
 * - A file with more than one link is written once; its other names are
 *   hard links to the first, matched by device and inode.
 * - An overlay whiteout (char device 0/0) becomes `.wh.NAME`; a directory
 *   with trusted.overlay.opaque=y is followed by `DIR/.wh..wh..opq`. Both
 *   markers are empty files, mode 0, owner 0, time 0.
 * - Owners are written minus idOffset: an upper dir's files belong to host
 *   ids idOffset + the id inside the sandbox. An id outside the range of 65536
 *   (a file the sandbox could not have made) becomes 65534 (nobody).
 * - Sockets, fifos and other devices are left out: a layer cannot hold them.
 *
 * Never follows a link. The directory may be a running sandbox's and hostile:
 * each directory is opened O_NOFOLLOW and its entries reached through
 * /proc/self/fd/N/NAME, so swapping a directory for a symlink mid-walk leads
 * nowhere but where the walk already was. A file that shrinks while it is
 * read is padded with zeros, one that grows is cut at its size when listed.
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { Readable } from 'node:stream';
import brigSpawn from 'brig-spawn';
import { MAX_LAYER_ID, NOBODY, OPAQUE_MARKER, WHITEOUT_PREFIX } from './archive.ts';
import { BLOCK, padding } from './tar.ts';
import type { ImageConfig, ImageManifest, ImageStore, ImportedLayer } from './store.ts';

export interface LayerTarOptions {
  /** Host id of the sandbox's uid 0: written ids are host ids minus this. @default 0 */
  idOffset?: number;
}

interface TarEntry {
  name: string;
  /** '0' file, '1' hard link, '2' symlink, '5' directory, 'x' pax header. */
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
}

/** The largest value of an 11-digit octal field (size, mtime). */
const MAX_OCTAL_11 = 0o77777777777;

export function layerTar(dir: string, options: LayerTarOptions = {}): Readable {
  return Readable.from(new LayerWalk(options.idOffset ?? 0).tar(dir), { objectMode: false });
}

/** The directory as a new layer of the store (its digest is that of layerTar's output). */
export function commitDirectory(store: ImageStore, dir: string, idOffset: number): Promise<ImportedLayer> {
  return store.importLayer(layerTar(dir, { idOffset }));
}

/** commitDirectory, then an image of `layers` + the new one tagged `name:tag`, with no prune between them (a sandbox's commit). */
export async function commitDirectoryAs(store: ImageStore, dir: string, idOffset: number, image: { name: string; tag: string; layers: string[]; config: ImageConfig }): Promise<{ layer: ImportedLayer; image: ImageManifest }> {
  return store.importLayerAndTag(layerTar(dir, { idOffset }), (digest) => ({ ...image, layers: [...image.layers, digest] }));
}

class LayerWalk {
  /** "dev:ino" of files with more than one link, to the name they were first written under. */
  private readonly linked = new Map<string, string>();

  constructor(private readonly idOffset: number) {}

  async *tar(dir: string): AsyncGenerator<Buffer> {
    const root = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      yield* this.directory(`/proc/self/fd/${root.fd}`, '');
    } finally {
      await root.close();
    }
    yield Buffer.alloc(2 * BLOCK);
  }

  private id(hostId: number): number {
    const inside = hostId - this.idOffset;
    return inside >= 0 && inside <= MAX_LAYER_ID ? inside : NOBODY;
  }

  private base(info: Stats, name: string, type: string): TarEntry {
    const mtime = Math.min(Math.max(Math.floor(info.mtimeMs / 1000), 0), MAX_OCTAL_11);
    return { name, type, mode: info.mode & 0o7777, uid: this.id(info.uid), gid: this.id(info.gid), size: 0, mtime, linkname: '' };
  }

  /** The entries of one directory (open at `at`, a /proc/self/fd path), `prefix` its name in the tar. */
  private async *directory(at: string, prefix: string): AsyncGenerator<Buffer> {
    const names = (await fs.readdir(at)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const host = `${at}/${name}`;
      const path = prefix + name;
      const info = await fs.lstat(host).catch(vanished);
      if (info === null) continue;
      if (info.isDirectory()) {
        const handle = await fs.open(host, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(vanished);
        if (handle === null) continue;
        try {
          const pinned = `/proc/self/fd/${handle.fd}`;
          yield header(this.base(await handle.stat(), `${path}/`, '5'));
          // "/." so lgetxattr reads the directory, not the /proc magic link itself
          if (brigSpawn.isOpaque(`${pinned}/.`)) yield header(marker(`${path}/${OPAQUE_MARKER}`));
          yield* this.directory(pinned, `${path}/`);
        } finally {
          await handle.close();
        }
      } else if (info.isSymbolicLink()) {
        const target = await fs.readlink(host).catch(vanished);
        if (target !== null) yield header({ ...this.base(info, path, '2'), linkname: target });
      } else if (info.isFile()) {
        yield* this.file(host, path, info);
      } else if (info.isCharacterDevice() && info.rdev === 0) {
        yield header(marker(prefix + WHITEOUT_PREFIX + name));
      }
    }
  }

  private async *file(host: string, path: string, listed: Stats): AsyncGenerator<Buffer> {
    // O_NONBLOCK: a file swapped for a fifo since the lstat must not hang the walk
    const handle = await fs.open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(vanished);
    if (handle === null) return;
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.ino !== listed.ino || info.dev !== listed.dev) return;
      if (info.nlink > 1) {
        const key = `${info.dev}:${info.ino}`;
        const first = this.linked.get(key);
        if (first !== undefined) {
          yield header({ ...this.base(info, path, '1'), linkname: first, size: 0 });
          return;
        }
        this.linked.set(key, path);
      }
      yield header({ ...this.base(info, path, '0'), size: info.size });
      let left = info.size;
      const buffer = Buffer.alloc(Math.min(1 << 20, Math.max(info.size, 1)));
      while (left > 0) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(left, buffer.length), null);
        if (bytesRead === 0) {
          yield Buffer.alloc(left);
          break;
        }
        yield Buffer.from(buffer.subarray(0, bytesRead));
        left -= bytesRead;
      }
      yield Buffer.alloc(padding(info.size));
    } finally {
      await handle.close();
    }
  }
}

/** A whiteout or opaque marker: an empty file whose metadata carries nothing. */
function marker(name: string): TarEntry {
  return { name, type: '0', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '' };
}

/** null for an entry a running sandbox removed since the walk listed it. */
function vanished(error: NodeJS.ErrnoException): null {
  if (error.code === 'ENOENT') return null;
  throw error;
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0';
}

/** name and prefix for ustar, or null when the name needs a pax path. */
function splitName(name: string): { name: string; prefix: string } | null {
  const bytes = Buffer.byteLength(name);
  if (bytes <= 100) return { name, prefix: '' };
  // a directory's trailing '/' stays on the name part
  for (let slash = name.indexOf('/'); slash !== -1 && slash < name.length - 1; slash = name.indexOf('/', slash + 1)) {
    const prefix = name.slice(0, slash);
    const rest = name.slice(slash + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100) return { name: rest, prefix };
    if (Buffer.byteLength(prefix) > 155) break;
  }
  return null;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyBytes = Buffer.byteLength(body);
  let length = bodyBytes + 1;
  while (String(length).length + bodyBytes !== length) length++;
  return `${length}${body}`;
}

/** One entry's header block, after a pax header when some field does not fit ustar. */
function header(entry: TarEntry): Buffer {
  const split = splitName(entry.name);
  const records: string[] = [];
  const longLink = Buffer.byteLength(entry.linkname) > 100;
  if (split === null) records.push(paxRecord('path', entry.name));
  if (longLink) records.push(paxRecord('linkpath', entry.linkname));
  if (entry.size > MAX_OCTAL_11) records.push(paxRecord('size', String(entry.size)));
  const block = ustar({
    ...entry,
    name: split?.name ?? entry.name.slice(0, 100),
    linkname: longLink ? '' : entry.linkname,
    size: entry.size > MAX_OCTAL_11 ? 0 : entry.size,
  }, split?.prefix ?? '');
  if (records.length === 0) return block;
  const data = Buffer.from(records.join(''));
  const pax = ustar({ name: '././@PaxHeader', type: 'x', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0, linkname: '' }, '');
  return Buffer.concat([pax, data, Buffer.alloc(padding(data.length)), block]);
}

function ustar(entry: TarEntry, prefix: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  // names that did not fit went to pax; what is written here is cut at a character boundary by Buffer.write
  block.write(entry.name, 0, 100, 'utf8');
  block.write(octal(entry.mode, 8), 100, 'latin1');
  block.write(octal(entry.uid, 8), 108, 'latin1');
  block.write(octal(entry.gid, 8), 116, 'latin1');
  block.write(octal(entry.size, 12), 124, 'latin1');
  block.write(octal(entry.mtime, 12), 136, 'latin1');
  block.write(' '.repeat(8), 148, 'latin1');
  block.write(entry.type, 156, 'latin1');
  block.write(entry.linkname, 157, 100, 'utf8');
  block.write('ustar\0' + '00', 257, 'latin1');
  block.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'latin1');
  return block;
}
