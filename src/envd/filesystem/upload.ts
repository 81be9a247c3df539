import { randomBytes } from 'node:crypto';
import { createWriteStream, type Stats } from 'node:fs';
import { chmod, chown, lstat, realpath, rename, rm, stat } from 'node:fs/promises';
import { makeDirs } from '../users.ts';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { HttpError } from './http-error.ts';

/**
 * Writing an uploaded file so that readers never see half of it: the bytes
 * stream into a temporary file beside the target (same directory, so the
 * same filesystem) and a rename puts it in place. A failed or cut upload
 * removes the temporary file and leaves the target as it was. Parent
 * directories are created, as E2B's envd does.
 */

const TEMP_PREFIX = '.brig-upload-';
const TEMP_NAME = /^\.brig-upload-[0-9a-f]{16}$/;

/** The watcher hides these: they are an upload in flight, not the user's files. */
export function isUploadTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/**
 * Stream `source` into `target`. An existing file keeps its rwx bits;
 * a symlink is written through (as writing to it in place would), a dangling
 * one is replaced.
 */
export async function writeFileAtomically(target: string, source: AsyncIterable<Buffer>, owner: { uid: number; gid: number } | null = null): Promise<void> {
  const destination = await followLink(target);
  const existing = await stat(destination).catch(missingAsNull);
  if (existing?.isDirectory()) throw new HttpError(400, `path is a directory: ${target}`);
  const directory = dirname(destination);
  await makeDirs(directory, owner);
  const temp = join(directory, TEMP_PREFIX + randomBytes(8).toString('hex'));
  try {
    // A 1 MiB buffer lets the stream gather the socket's 64 KiB chunks into one writev.
    await pipeline(source, createWriteStream(temp, { flags: 'wx', mode: 0o666, highWaterMark: 1024 * 1024 }));
    // The umask applied at creation; a replaced file keeps its rwx bits (never setuid/setgid: new content).
    if (existing) await chmod(temp, existing.mode & 0o777);
    // Written by root for another user (an image sandbox): the file is theirs, as if they wrote it.
    if (owner) await chown(temp, owner.uid, owner.gid);
    await rename(temp, destination);
  } catch (error) {
    await rm(temp, { force: true });
    throw outOfSpace(error, target) ?? error;
  }
}

/** ENOSPC (disk or tmpfs full), EDQUOT (quota), EFBIG (the sandbox's file-size limit): 507, saying which file. */
function outOfSpace(error: unknown, target: string): HttpError | null {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT' && code !== 'EFBIG') return null;
  return new HttpError(507, `not enough space to write ${target} (${code}); nothing was written: ${(error as Error).message}`);
}

async function followLink(path: string): Promise<string> {
  const stats = await lstat(path).catch(missingAsNull);
  if (!stats?.isSymbolicLink()) return path;
  return realpath(path).catch(() => path);
}

function missingAsNull(error: NodeJS.ErrnoException): Stats | null {
  if (error.code === 'ENOENT') return null;
  throw error;
}
