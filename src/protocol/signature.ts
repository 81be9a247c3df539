import { createHash, timingSafeEqual, createHmac } from 'node:crypto';

/**
 * E2B's signed /files URLs, one computation for envd (which checks them),
 * the daemon's gateway (which tells from one which sandbox it is for) and
 * any SDK: signature = "v1_" + base64(sha256("<path>:<read|write>:<user>:<token>[:<expiration>]"))
 * without `=` padding. `<path>` and `<user>` are the query's `path` and
 * `username` exactly as sent ("" when absent: the SDK signs "" for the
 * default user), `<expiration>` its `signature_expiration` in unix seconds.
 */

export type FileOperation = 'read' | 'write';

export interface SignatureInput {
  path: string;
  operation: FileOperation;
  user: string;
  token: string;
  /** Unix seconds, or null for a URL that does not expire. */
  expiration: number | null;
}

export function fileSignature(input: SignatureInput): string {
  const fields = [input.path, input.operation, input.user, input.token];
  if (input.expiration !== null) fields.push(String(input.expiration));
  return 'v1_' + createHash('sha256').update(fields.join(':')).digest('base64').replace(/=+$/, '');
}

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * A sandbox's traffic access token: opens its ports (E2B's
 * E2B-Traffic-Access-Token) and nothing else. Made from its access token, so
 * nothing more is stored, and one-way: holding it gives no way to envd.
 */
export function trafficAccessToken(accessToken: string): string {
  return createHmac('sha256', accessToken).update('brig sandbox traffic access token').digest('base64url');
}

/** What a signed /files URL claims. */
export interface SignedFileRequest {
  signature: string;
  path: string;
  user: string;
  operation: FileOperation;
  /** Unix seconds, or null for a URL that does not expire. */
  expiration: number | null;
}

/** The signed parts of a /files query for `operation`; null without a signature or with a malformed expiration. */
export function signedFileQuery(query: URLSearchParams, operation: FileOperation): SignedFileRequest | null {
  const signature = query.get('signature');
  const expirationText = query.get('signature_expiration');
  if (signature === null || (expirationText !== null && !/^\d{1,15}$/.test(expirationText))) return null;
  return {
    signature,
    path: query.get('path') ?? '',
    user: query.get('username') ?? '',
    operation,
    expiration: expirationText === null ? null : Number(expirationText),
  };
}

/** Whether `token` made this signature (expired or not: see signatureExpired). Constant time. */
export function signedWith(request: SignedFileRequest, token: string): boolean {
  return sameSecret(request.signature, fileSignature({ ...request, token }));
}

export function signatureExpired(request: SignedFileRequest, nowMs = Date.now()): boolean {
  return request.expiration !== null && request.expiration < Math.floor(nowMs / 1000);
}
