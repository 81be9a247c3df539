import type { ServerResponse } from 'node:http';
import { ConnectError } from '../../protocol/index.ts';

/**
 * /files answers errors as E2B's envd does: JSON `{"code": <HTTP status>,
 * "message"}` (the SDK's openapi `Error` schema), not Connect's code names.
 * The SDK maps 404 to FileNotFoundError and shows the message otherwise.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function sendHttpError(response: ServerResponse, error: unknown): void {
  const { status, message } = httpErrorOf(error);
  if (response.headersSent) {
    // Mid-download: the client must see a broken transfer, not a short file.
    response.destroy();
    return;
  }
  const body = JSON.stringify({ code: status, message });
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

export function httpErrorOf(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof ConnectError) return new HttpError(error.httpStatus, error.message);
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  // zlib's Z_DATA_ERROR, Z_BUF_ERROR…: the client's gzip body is broken, not envd.
  if (code.startsWith('Z_')) return new HttpError(400, `the gzip-encoded body cannot be decompressed: ${message}`);
  return new HttpError(ERRNO_STATUS[code] ?? 500, message);
}

const ERRNO_STATUS: Record<string, number> = {
  ENOENT: 404,
  EACCES: 403,
  EPERM: 403,
  EROFS: 403,
  // Out of space, out of quota, or past the sandbox's file-size limit: the data cannot be stored.
  ENOSPC: 507,
  EDQUOT: 507,
  EFBIG: 507,
  ENOTDIR: 400,
  EISDIR: 400,
  EEXIST: 400,
  EINVAL: 400,
  ENAMETOOLONG: 400,
  ELOOP: 400,
};
