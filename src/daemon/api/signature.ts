import { fileSignature, sameSecret, type FileOperation } from '../../protocol/index.ts';

/**
 * E2B's signed /files URLs, checked on the daemon side: the gateway must tell
 * which sandbox a header-less signed URL belongs to, and refuses a bad one
 * before it reaches envd.
 *
 * The signature itself is computed in src/protocol/signature.ts, shared with envd.
 */

export interface SignedFileRequest {
  signature: string;
  path: string;
  user: string;
  operation: FileOperation;
  /** Unix seconds, or null for a URL that does not expire. */
  expiration: number | null;
}

/** The signed parts of a /files URL, or null when it carries no signature (or a malformed expiration). */
export function signedFileRequest(method: string | undefined, url: URL): SignedFileRequest | null {
  const signature = url.searchParams.get('signature');
  if (signature === null || url.pathname !== '/files') return null;
  const operation = method === 'GET' ? 'read' : method === 'POST' ? 'write' : null;
  const expirationText = url.searchParams.get('signature_expiration');
  if (operation === null || (expirationText !== null && !/^\d{1,15}$/.test(expirationText))) return null;
  return {
    signature,
    path: url.searchParams.get('path') ?? '',
    user: url.searchParams.get('username') ?? '',
    operation,
    expiration: expirationText === null ? null : Number(expirationText),
  };
}

/** Whether `token` made this signature (expired or not: see `expired`). Constant time. */
export function signedWith(request: SignedFileRequest, token: string): boolean {
  return sameSecret(request.signature, fileSignature({ path: request.path, operation: request.operation, user: request.user, token, expiration: request.expiration }));
}

export function expired(request: SignedFileRequest, nowMs = Date.now()): boolean {
  return request.expiration !== null && request.expiration < Math.floor(nowMs / 1000);
}
