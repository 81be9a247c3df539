import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { constants as zlib, createGzip, createGunzip } from 'node:zlib';
import type { WriteInfo } from '../../protocol/index.ts';
import type { HttpContext } from '../server.ts';
import { ownerFor, resolveUser, userPath, type User } from '../users.ts';
import { HttpError, sendHttpError } from './http-error.ts';
import { boundaryOf, MultipartReader } from './multipart.ts';
import { checkFileAccess } from './signature.ts';
import { writeFileAtomically } from './upload.ts';

/**
 * E2B's plain-HTTP file transfer: `GET /files?path=&username=` streams a file
 * out, `POST /files` streams files in (multipart/form-data or a raw
 * application/octet-stream body, either gzip-encoded). Bodies go between
 * socket and disk chunk by chunk, with backpressure both ways: neither a
 * download nor an upload is ever held whole in memory.
 */

export async function download(request: IncomingMessage, response: ServerResponse, context: HttpContext): Promise<void> {
  try {
    checkFileAccess(request, context, 'read');
    const path = userPath(userOf(context), context.url.searchParams.get('path') ?? '');
    const gzip = acceptsGzip(request.headers['accept-encoding']);
    const { file, size } = await openRegularFile(path);
    if (size === 0) {
      // The SDK reads "Content-Length: 0" as an empty file, whatever the format asked for.
      await file.close();
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 0 });
      response.end();
      return;
    }
    // Read up to the size seen now: a file still growing cannot outrun its Content-Length.
    // 1 MiB reads: a tenth of the syscalls and writes of the 64 KiB default, for a few MiB in flight at most.
    const stream = file.createReadStream({ start: 0, end: size - 1, highWaterMark: 1024 * 1024 });
    if (gzip) {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip', vary: 'Accept-Encoding' });
      // Node's fetch asks for gzip on every request: favour speed over ratio.
      await pipeline(stream, createGzip({ level: zlib.Z_BEST_SPEED }), response);
    } else {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, vary: 'Accept-Encoding' });
      await pipeline(stream, response);
    }
    // A file that shrank while being sent would leave the client waiting for bytes that never come.
    if (stream.bytesRead < size) response.destroy();
  } catch (error) {
    sendHttpError(response, error);
  }
}

export async function upload(request: IncomingMessage, response: ServerResponse, context: HttpContext): Promise<void> {
  try {
    checkFileAccess(request, context, 'write');
    const user = userOf(context);
    refuseMetadata(request);
    const gzip = gzipEncoded(request.headers['content-encoding']);
    const contentType = request.headers['content-type'] ?? '';
    const mediaType = (contentType.split(';')[0] ?? '').trim().toLowerCase();
    const queryPath = context.url.searchParams.get('path');
    let written: WriteInfo[];
    if (mediaType === 'application/octet-stream') {
      if (queryPath === null) throw new HttpError(400, 'an application/octet-stream upload needs the path query parameter');
      const path = userPath(user, queryPath);
      await writeFileAtomically(path, requestBody(request, gzip), ownerFor(user));
      written = [writeInfo(path)];
    } else if (mediaType.startsWith('multipart/')) {
      const boundary = boundaryOf(contentType);
      written = await writeParts(new MultipartReader(requestBody(request, gzip), boundary), user, queryPath);
    } else {
      throw new HttpError(400, `unsupported content type '${contentType}': send multipart/form-data or application/octet-stream`);
    }
    const json = JSON.stringify(written);
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    response.end(json);
  } catch (error) {
    sendHttpError(response, error);
    // Nothing is half-written; what the client still sends is read and dropped, so it gets to
    // read this answer, and the connection stays usable.
    if (!request.complete) {
      request.unpipe();
      request.resume();
    }
  }
}

/**
 * Each `file` part to its own path: the query's `path` when given (one
 * file), otherwise the part's filename (the SDK's write of several files).
 * Other form fields are skipped. Each file lands whole or not at all; files
 * before a failing one stay written, as in E2B.
 */
async function writeParts(reader: MultipartReader, user: User, queryPath: string | null): Promise<WriteInfo[]> {
  const written: WriteInfo[] = [];
  for (let part = await reader.next(); part; part = await reader.next()) {
    if (part.name !== 'file') continue;
    const target = queryPath ?? part.filename;
    if (!target) throw new HttpError(400, 'a file part needs a filename (its path) when the path query parameter is not given');
    const path = userPath(user, target);
    if (written.some((file) => file.path === path)) throw new HttpError(400, `cannot upload several files to the same path '${path}' in one request; the first was written`);
    await writeFileAtomically(path, part.body, ownerFor(user));
    written.push(writeInfo(path));
  }
  return written;
}

function writeInfo(path: string): WriteInfo {
  return { name: basename(path), type: 'file', path };
}

/** The query's `username`, as /files names a user (RPCs use Authorization instead); unknown users get 401 as in E2B. */
function userOf(context: HttpContext): User {
  try {
    return resolveUser(context.identity, context.url.searchParams.get('username'));
  } catch (error) {
    throw new HttpError(401, (error as Error).message);
  }
}

/**
 * The file to serve, opened with O_NONBLOCK so that a FIFO cannot hang the
 * open; only a regular file is served (a device such as /dev/urandom would
 * stream forever). Its size is taken from the open file, not the path.
 */
async function openRegularFile(path: string): Promise<{ file: FileHandle; size: number }> {
  let file: FileHandle;
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new HttpError(404, `path '${path}' does not exist`);
    throw error;
  }
  try {
    const stats = await file.stat();
    if (stats.isDirectory()) throw new HttpError(400, `path '${path}' is a directory`);
    if (!stats.isFile()) throw new HttpError(400, `path '${path}' is not a regular file`);
    return { file, size: stats.size };
  } catch (error) {
    await file.close();
    throw error;
  }
}

/**
 * Whether to gzip a download. envd's callers are local (a unix socket, or
 * loopback through the daemon), where compressing costs far more time than
 * it saves, and every fetch() offers "gzip, deflate" by default. So envd
 * compresses when gzip is asked for on its own (`Accept-Encoding: gzip`, what
 * the SDK's `gzip: true` sends) or when identity is refused; for a general
 * list it sends the file as it is, which HTTP lets a server choose. When
 * identity is refused and gzip is not acceptable either: 406.
 */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  const offers = header.split(',').map((item) => {
    const [coding = '', ...params] = item.split(';').map((part) => part.trim().toLowerCase());
    const q = params.find((param) => param.startsWith('q='));
    const quality = q ? Number(q.slice(2)) : 1;
    return { coding, quality: Number.isFinite(quality) ? quality : 1 };
  });
  const accepted = offers.filter((offer) => offer.quality > 0).map((offer) => offer.coding);
  const gzipAccepted = accepted.includes('gzip') || accepted.includes('x-gzip');
  const identityRefused = offers.some((offer) => (offer.coding === 'identity' || offer.coding === '*') && offer.quality === 0) && !accepted.includes('identity');
  if (identityRefused) {
    if (gzipAccepted || accepted.includes('*')) return true;
    throw new HttpError(406, `no acceptable content encoding in '${header}': envd sends gzip or identity`);
  }
  return gzipAccepted && accepted.every((coding) => coding === 'gzip' || coding === 'x-gzip' || coding === 'identity');
}

function gzipEncoded(header: string | undefined): boolean {
  const coding = (header ?? '').trim().toLowerCase();
  if (coding === '' || coding === 'identity') return false;
  if (coding === 'gzip' || coding === 'x-gzip') return true;
  throw new HttpError(400, `unsupported Content-Encoding '${header}': envd accepts gzip`);
}

/**
 * The request body as chunks, gunzipped when it says so. The request is
 * never destroyed when writing fails, so the error can still be answered
 * on the same connection.
 */
function requestBody(request: IncomingMessage, gzip: boolean): AsyncIterable<Buffer> {
  if (!gzip) return request.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
  const gunzip = createGunzip();
  request.once('error', (error) => gunzip.destroy(error));
  request.once('close', () => {
    if (!request.complete) gunzip.destroy(new Error('the upload was cut off'));
  });
  gunzip.once('error', () => request.unpipe(gunzip));
  request.pipe(gunzip);
  return gunzip;
}

/**
 * E2B 0.6.2 stores X-Metadata-* headers as extended attributes; brig does
 * not keep file metadata, and says so rather than dropping it silently.
 */
function refuseMetadata(request: IncomingMessage): void {
  const header = Object.keys(request.headers).find((name) => name.startsWith('x-metadata-'));
  if (header) throw new HttpError(501, `file metadata (${header}) is not supported by brig's envd; write the file without metadata`);
}
