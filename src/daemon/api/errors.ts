import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isBrigError, outOfDescriptors } from '../../protocol/index.ts';

/**
 * The API's one error handler: every failure leaves as `{code, message, hint}`
 * with a 4xx for bad input and a 5xx only for brig's own faults. Bad input is
 * never a 5xx, and a message names the field at fault.
 */

/** What every error response carries. `code` is brig's code, except on E2B's 404s (see describeError). */
export interface ErrorBody {
  code: string | number;
  message: string;
  hint: string;
  /** On E2B's routes, brig's code when `code` holds the HTTP status (E2B's Error schema has this field). */
  error_code?: string;
}

/**
 * Codes the API answers with that src/protocol/errors.ts does not register
 * (yet): an unknown route, and a fault of brig's own. Proposed for the registry.
 */
export const BAD_REQUEST_HINT = 'The OpenAPI document at /openapi.json (interactive at /docs) lists every route and field.';

/** The JSON schema of ErrorBody, for the OpenAPI document. */
export const ERROR_SCHEMA = {
  type: 'object',
  description: 'brig\'s error: a code from docs/errors.md, what went wrong, how to fix it.',
  properties: {
    code: { type: ['string', 'integer'], description: 'brig\'s code (BRIG_…); on E2B\'s routes a 404 carries the HTTP status here, as E2B does' },
    message: { type: 'string' },
    hint: { type: 'string' },
    error_code: { type: 'string', description: 'brig\'s code, when `code` holds the HTTP status' },
  },
  required: ['code', 'message', 'hint'],
} as const;

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const { status, body } = describeError(error, request);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return reply.code(status).type('application/json; charset=utf-8').send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    return reply.code(404).send({
      code: 'BRIG_NOT_FOUND',
      message: `no route ${request.method} ${path}`,
      hint: `${BAD_REQUEST_HINT} envd calls need the E2b-Sandbox-Id header (or the /sandboxes/{id}/envd/ prefix).`,
    } satisfies ErrorBody);
  });
}

/** The router's own refusals (a malformed URL, an over-long id), which come before any handler: the same shape. */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
  const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is longer than any id or name' : 'the URL is malformed (bad percent-encoding)';
  void reply.code(status).send(badRequest(message));
}

function describeError(error: FastifyError, request: FastifyRequest): { status: number; body: ErrorBody } {
  if (isBrigError(error)) {
    const body: ErrorBody = { code: error.code, message: error.message, hint: error.hint };
    // E2B's SDK tells "not found" by `code === 404` in the body: with brig's string
    // code, Sandbox.kill of a gone sandbox would throw instead of returning false.
    if (error.httpStatus === 404 && request.routeOptions.config.e2b) return { status: 404, body: { ...body, code: 404, error_code: error.code } };
    return { status: error.httpStatus, body };
  }
  if (error.validation) return { status: 400, body: badRequest(validationMessage(error)) };
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, body: badRequest('the body is not valid JSON') };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, body: badRequest('the body is empty but Content-Type says JSON') };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: badRequest(`the body is larger than this daemon accepts (${request.routeOptions.bodyLimit} bytes)`) };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, body: badRequest(`Content-Type ${JSON.stringify(request.headers['content-type'] ?? '')} is not accepted: send application/json`) };
  }
  // The daemon ran out of descriptors somewhere (a flood): it is full, not broken.
  if (outOfDescriptors(error)) {
    return { status: 503, body: { code: 'BRIG_CAPACITY', message: `brig is out of file descriptors (${error.code}) on ${request.method} ${request.url.split('?')[0]}`, hint: 'Retry when the load has passed; `brig serve --max-connections` caps what clients can hold.' } };
  }
  // fastify's own 4xx (a bad Content-Length, …): the client's fault, said plainly.
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) return { status, body: badRequest(error.message) };
  return {
    status: 500,
    body: { code: 'BRIG_INTERNAL', message: `brig failed on ${request.method} ${request.url.split('?')[0]}: ${error.message}`, hint: 'This is a bug in brig: the daemon log has the stack; please report it.' },
  };
}

function badRequest(message: string): ErrorBody {
  return { code: 'BRIG_BAD_REQUEST', message, hint: BAD_REQUEST_HINT };
}

/** "body.timeout must be integer", "body.timeout is required": the field first, then what is wrong with it. */
function validationMessage(error: FastifyError): string {
  const problems = (error.validation ?? []).map((problem) => {
    const params = problem.params as Record<string, unknown>;
    const base = [error.validationContext ?? 'request', ...problem.instancePath.split('/').filter(Boolean)].join('.');
    if (typeof params.missingProperty === 'string') return `${base}.${params.missingProperty} is required`;
    if (typeof params.additionalProperty === 'string') return `${base}.${params.additionalProperty} is not a known field`;
    return `${base} ${problem.message ?? 'is invalid'}`;
  });
  return problems.join('; ') || error.message;
}

/** Replies an error from code outside fastify's lifecycle (the gateway, after hijacking). */
export function errorPayload(code: string, message: string, hint: string): string {
  return JSON.stringify({ code, message, hint } satisfies ErrorBody);
}

/** An error answered outside fastify (the gateway); a body not read (an upload refused) ends the connection rather than being read in vain. */
export function answerError(client: IncomingMessage, response: ServerResponse, status: number, code: string, message: string, hint: string): void {
  if (response.headersSent || response.destroyed) return void response.destroy();
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8' };
  if (!client.complete) headers.connection = 'close';
  response.writeHead(status, headers).end(errorPayload(code, message, hint));
}

/** The same on a socket no HTTP response object holds (an Upgrade request): written as raw HTTP, then the connection ends. */
export function answerErrorRaw(socket: Duplex, status: number, code: string, message: string, hint: string): void {
  const body = errorPayload(code, message, hint);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route of E2B's control plane: its 404s carry E2B's numeric code (see describeError). */
    e2b?: boolean;
  }
}
