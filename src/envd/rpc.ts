import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectError, EnvelopeReader, ENVELOPE_FLAG, encodeEndStream, encodeEnvelope, parseMessage } from '../protocol/index.ts';
import type { User } from './users.ts';

/**
 * Connect over HTTP/1.1, JSON only: what the e2b SDK speaks. Handlers see
 * parsed messages and a context; this file owns the wire: status codes,
 * envelopes, keepalives, backpressure, client disconnects.
 */

/** The largest request message envd reads (a SendInput chunk, a path…). */
export const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

export interface RpcContext {
  request: IncomingMessage;
  /** The user the call runs as (Authorization: Basic, or the default user). */
  user: User;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Connect-Timeout-Ms, when the client sent one. On process Start it is the process's lifetime. */
  timeoutMs: number | null;
  /** Where a process starts when its call names no cwd: the image's WORKDIR (E2B's default workdir); null: the user's home. */
  workdir: string | null;
}

export type Message = Record<string, unknown>;
export type UnaryHandler = (message: Message, context: RpcContext) => Promise<unknown>;
export type ServerStreamHandler = (message: Message, context: RpcContext, stream: StreamWriter) => Promise<void>;
export type ClientStreamHandler = (messages: AsyncIterable<Message>, context: RpcContext) => Promise<unknown>;

/** A server stream's sending side. */
export interface StreamWriter {
  /** Send one message; resolves when the client can take more (backpressure), or when it is gone. */
  send(message: unknown): Promise<void>;
  /**
   * Send an envelope already encoded (encodeEnvelope's bytes): for hot paths that
   * encode once for many clients. False when the client is congested: await drained().
   */
  write(frame: Buffer): boolean;
  /** Resolves when the client can take more, or is gone. */
  drained(): Promise<void>;
  /** True once the client has gone away: stop producing. */
  readonly closed: boolean;
}

export async function readBody(request: IncomingMessage, limit = MAX_MESSAGE_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ConnectError('resource_exhausted', `request body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function sendUnaryError(response: ServerResponse, error: ConnectError): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const body = JSON.stringify(error.toJSON());
  response.writeHead(error.httpStatus, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

export async function serveUnary(handler: UnaryHandler, context: RpcContext, response: ServerResponse): Promise<void> {
  const type = context.request.headers['content-type'] ?? '';
  if (!type.startsWith('application/json')) throw new ConnectError('invalid_argument', `unary calls take application/json, not ${type || 'nothing'}`);
  const message = parseMessage(await readBody(context.request));
  const result = (await handler(message, context)) ?? {};
  const body = JSON.stringify(result);
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}

/**
 * A server stream: one request envelope in, envelopes out, then END_STREAM
 * with `{}` or the error. Idle for the keepalive interval, the stream sends
 * the handler's keepalive message, so proxies and clients see it alive.
 */
export async function serveServerStream(handler: ServerStreamHandler, context: RpcContext, response: ServerResponse, keepalive: unknown): Promise<void> {
  const message = await readSingleEnvelope(context.request);
  // Headers go out with the first message: every stream sends one at once (start, or the watch's start).
  response.writeHead(200, { 'content-type': 'application/connect+json' });
  const writer = new ResponseStream(response, keepalive, keepaliveMs(context.request));
  let failure: ConnectError | undefined;
  try {
    await handler(message, context, writer);
  } catch (error) {
    failure = toConnectError(error);
  } finally {
    writer.stop();
  }
  if (!writer.closed) response.end(encodeEndStream(failure));
}

/** A client stream: envelopes in until END_STREAM, one unary-shaped answer out (as an envelope). */
export async function serveClientStream(handler: ClientStreamHandler, context: RpcContext, response: ServerResponse): Promise<void> {
  checkStreamContentType(context.request);
  let failure: ConnectError | undefined;
  let result: unknown = {};
  try {
    result = (await handler(readEnvelopes(context.request), context)) ?? {};
  } catch (error) {
    failure = toConnectError(error);
  }
  response.writeHead(200, { 'content-type': 'application/connect+json' });
  response.end(failure ? encodeEndStream(failure) : Buffer.concat([encodeEnvelope(result), encodeEndStream()]));
}

class ResponseStream implements StreamWriter {
  private lastSent = Date.now();
  private readonly timer: NodeJS.Timeout | null;
  private gone = false;

  constructor(
    private readonly response: ServerResponse,
    private readonly keepalive: unknown,
    intervalMs: number | null,
  ) {
    response.once('close', () => {
      this.gone = true;
    });
    this.timer = intervalMs
      ? setInterval(() => {
          if (Date.now() - this.lastSent >= intervalMs) void this.send(this.keepalive);
        }, Math.max(100, intervalMs / 2))
      : null;
  }

  get closed(): boolean {
    return this.gone || this.response.destroyed;
  }

  send(message: unknown): Promise<void> {
    return this.write(encodeEnvelope(message)) ? Promise.resolve() : this.drained();
  }

  write(frame: Buffer): boolean {
    if (this.closed) return true;
    this.lastSent = Date.now();
    return this.response.write(frame);
  }

  drained(): Promise<void> {
    if (this.closed || !this.response.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.response.off('drain', done);
        this.response.off('close', done);
        resolve();
      };
      this.response.on('drain', done);
      this.response.on('close', done);
    });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

function keepaliveMs(request: IncomingMessage): number | null {
  const seconds = Number(request.headers['keepalive-ping-interval']);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
}

function checkStreamContentType(request: IncomingMessage): void {
  const type = request.headers['content-type'] ?? '';
  if (!type.startsWith('application/connect+json')) throw new ConnectError('invalid_argument', `streaming calls take application/connect+json, not ${type || 'nothing'}`);
  const encoding = request.headers['connect-content-encoding'];
  if (encoding && encoding !== 'identity') throw new ConnectError('unimplemented', `compression ${encoding} is not supported; send uncompressed messages`);
}

async function readSingleEnvelope(request: IncomingMessage): Promise<Message> {
  checkStreamContentType(request);
  const messages: Message[] = [];
  for await (const message of readEnvelopes(request)) messages.push(message);
  if (messages.length !== 1) throw new ConnectError('invalid_argument', `a server-streaming call takes exactly one request message, got ${messages.length}`);
  return messages[0] ?? {};
}

async function* readEnvelopes(request: IncomingMessage): AsyncGenerator<Message> {
  const reader = new EnvelopeReader(MAX_MESSAGE_BYTES);
  for await (const chunk of request as AsyncIterable<Buffer>) {
    for (const envelope of reader.push(chunk)) {
      if (envelope.flags & ENVELOPE_FLAG.compressed) throw new ConnectError('unimplemented', 'compressed messages are not supported');
      if (envelope.flags & ENVELOPE_FLAG.endStream) return;
      yield parseMessage(envelope.data);
    }
  }
  if (reader.pending > 0) throw new ConnectError('invalid_argument', 'the request ended in the middle of a message');
}

export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'ENOENT':
      return new ConnectError('not_found', message);
    case 'EEXIST':
      return new ConnectError('already_exists', message);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ConnectError('permission_denied', message);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ConnectError('resource_exhausted', message);
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EINVAL':
    case 'ENAMETOOLONG':
    case 'ELOOP':
    case 'ENOTEMPTY':
      return new ConnectError('invalid_argument', message);
    default:
      return new ConnectError('internal', message);
  }
}
