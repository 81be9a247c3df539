import type { IncomingMessage } from 'node:http';
import { fileSignature, sameSecret, type FileOperation } from '../../protocol/index.ts';
import type { HttpContext } from '../server.ts';
import { HttpError } from './http-error.ts';

/**
 * E2B's signed /files URLs (computed in src/protocol/signature.ts): when envd
 * has an access token, a valid signature stands in for X-Access-Token, so a
 * browser or curl can fetch one file without holding the token.
 */

/** Throws 401 unless the request holds the access token, or a valid, unexpired signature for this operation. */
export function checkFileAccess(request: IncomingMessage, context: HttpContext, operation: FileOperation): void {
  if (context.authorized || context.accessToken === null) return;
  // As E2B's envd: a token that is sent must be the right one; a signature does not excuse a wrong token.
  if (request.headers['x-access-token'] !== undefined) throw new HttpError(401, 'X-Access-Token does not match this sandbox\'s access token');
  const query = context.url.searchParams;
  const signature = query.get('signature');
  if (signature === null) throw new HttpError(401, 'this sandbox is secured: send its access token as X-Access-Token, or use a signed URL (sandbox.downloadUrl / uploadUrl)');
  const expirationText = query.get('signature_expiration');
  if (expirationText !== null && !/^\d{1,15}$/.test(expirationText)) throw new HttpError(401, 'signature_expiration must be a unix time in seconds');
  const expiration = expirationText === null ? null : Number(expirationText);
  const expected = fileSignature({ path: query.get('path') ?? '', operation, user: query.get('username') ?? '', token: context.accessToken, expiration });
  if (!sameSecret(signature, expected)) throw new HttpError(401, `invalid signature for ${operation}: it was made for another path, user, operation or expiration`);
  if (expiration !== null && expiration < Math.floor(Date.now() / 1000)) throw new HttpError(401, 'the signature has expired');
}
