import { signedFileQuery, type SignedFileRequest } from '../../protocol/index.ts';

/**
 * E2B's signed /files URLs, seen by the gateway: it must tell which sandbox a
 * header-less signed URL belongs to, and refuses a bad one before it reaches
 * envd. Parsing and checking live in src/protocol/signature.ts, shared with envd.
 */

/** The signed parts of a /files URL, or null when it is not one (another path or method, no signature, a malformed expiration). */
export function signedFileRequest(method: string | undefined, url: URL): SignedFileRequest | null {
  if (url.pathname !== '/files') return null;
  const operation = method === 'GET' ? 'read' : method === 'POST' ? 'write' : null;
  return operation === null ? null : signedFileQuery(url.searchParams, operation);
}
