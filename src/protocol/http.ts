import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Not forwarded: they describe one connection, not the request (RFC 9110 §7.6.1). */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'];

/**
 * The headers of a message passed on to the next hop (the envd gateway, the
 * egress proxy, the LLM gateway): hop-by-hop headers dropped, also those the
 * Connection header names. A request body of unknown length stays chunked on
 * its way on (Node frames it; without this a GET's body would go unframed).
 */
export function forwardedHeaders(incoming: IncomingHttpHeaders, request = true): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...incoming };
  const named = String(incoming.connection ?? '').split(',').map((name) => name.trim().toLowerCase());
  for (const name of [...HOP_BY_HOP, ...named]) delete headers[name];
  if (request && incoming['transfer-encoding'] !== undefined && incoming['content-length'] === undefined) headers['transfer-encoding'] = 'chunked';
  return headers;
}
