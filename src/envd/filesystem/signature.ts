import type { IncomingMessage } from 'node:http';
import { signatureExpired, signedFileQuery, signedWith, type FileOperation } from '../../protocol/index.ts';
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
  const signed = signedFileQuery(context.url.searchParams, operation);
  if (!signed) throw new HttpError(401, 'this sandbox is secured: send its access token as X-Access-Token, or a signed URL (sandbox.downloadUrl / uploadUrl) with signature_expiration in unix seconds');
  if (!signedWith(signed, context.accessToken)) throw new HttpError(401, `invalid signature for ${operation}: it was made for another path, user, operation or expiration`);
  if (signatureExpired(signed)) throw new HttpError(401, 'the signature has expired');
}
