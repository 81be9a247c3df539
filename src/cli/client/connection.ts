import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { BrigError, DEFAULT_DAEMON_URL, ERROR_CODES, apiKeyFile, defaultStateDir, type ErrorCode } from '../../protocol/index.ts';

/**
 * How the CLI reaches the daemon: BRIG_URL (default http://127.0.0.1:3000)
 * and the API key (BRIG_API_KEY, else the `api-key` file in the daemon's
 * default state directory: the CLI and the daemon share the machine).
 * node:http rather than fetch: no body timeout to cut a long, quiet `exec`,
 * and streams with backpressure both ways.
 */

export interface SendOptions {
  method: string;
  path: string;
  headers?: OutgoingHttpHeaders;
  /** A whole body, or a stream sent chunked. */
  body?: Buffer | string | Readable;
  /** Aborting closes the connection: the daemon, and envd behind it, see the caller leave. */
  signal?: AbortSignal;
}

export interface Daemon {
  readonly url: URL;
  /** The response head once it arrives, whatever its status; BRIG_DAEMON_UNAVAILABLE when nothing answers. */
  send(options: SendOptions): Promise<IncomingMessage>;
  /** A control-plane call: JSON in, JSON (or nothing) out; any other status is thrown as the daemon's BrigError. */
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** The daemon's error for a response that is not a success (the body is read here). */
  failure(response: IncomingMessage): Promise<BrigError>;
}

export function connect(): Daemon {
  const base = process.env.BRIG_URL || DEFAULT_DAEMON_URL;
  if (!URL.canParse(base) || !/^https?:$/.test(new URL(base).protocol)) {
    throw new BrigError('BRIG_USAGE', `BRIG_URL ${JSON.stringify(base)} is not an http:// or https:// URL`, `unset it for ${DEFAULT_DAEMON_URL}, or set it to where \`brig serve\` listens`);
  }
  const url = new URL(base);
  const secure = url.protocol === 'https:';
  // Keep-alive: `cp` of a tree and a shell's keystrokes make many small calls in a row.
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  let key: { value: string | null; hint: string } | undefined;

  const send = async (options: SendOptions): Promise<IncomingMessage> => {
    key ??= await apiKey();
    const headers: OutgoingHttpHeaders = { ...options.headers };
    if (key.value) headers.authorization = `Bearer ${key.value}`;
    return new Promise((resolve, reject) => {
      const target = new URL(options.path, url);
      const request = (secure ? httpsRequest : httpRequest)(target, { method: options.method, headers, agent, signal: options.signal }, resolve);
      let bodyError: Error | null = null;
      // `on`: a second error (the socket after the body) must not go unheard. After the response, the response stream reports it.
      request.on('error', (error: NodeJS.ErrnoException) => reject(bodyError ?? (error.name === 'AbortError' ? error : unavailable(url, error))));
      const body = options.body;
      if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) request.end(body);
      else {
        // A body that cannot be read (a host file gone) is that failure, not the daemon's absence.
        body.once('error', (error) => request.destroy((bodyError = error)));
        body.pipe(request);
      }
    });
  };

  const failure = async (response: IncomingMessage): Promise<BrigError> => {
    const text = await readText(response, 64 * 1024).catch(() => '');
    const error = brigErrorFrom(response.statusCode ?? 0, text);
    if (error.code === 'BRIG_UNAUTHORIZED' && key) return new BrigError(error.code, error.message, key.hint);
    return error;
  };

  return {
    url,
    send,
    failure,
    async call<T>(method: string, path: string, body?: unknown): Promise<T> {
      const response = await send({
        method,
        path,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if ((response.statusCode ?? 0) >= 300) throw await failure(response);
      const text = await readText(response, 64 * 1024 * 1024);
      const type = String(response.headers['content-type'] ?? '');
      return (text === '' ? undefined : type.includes('json') ? JSON.parse(text) : text) as T;
    },
  };
}

/** The key, or why there is none: said in the hint of a 401, so a wrong or unreadable key file is named. */
async function apiKey(): Promise<{ value: string | null; hint: string }> {
  const given = process.env.BRIG_API_KEY;
  if (given) return { value: given, hint: 'BRIG_API_KEY does not hold this daemon\'s key: it is in the api-key file of its --state directory' };
  // Loaded only here: the daemon's index brings fastify and SQLite (tens of ms) that a call with BRIG_API_KEY never needs.
  const file = apiKeyFile(defaultStateDir());
  try {
    return { value: readFileSync(file, 'utf8').trim(), hint: `${file} does not hold this daemon's key: set BRIG_API_KEY to the key in the api-key file of its --state directory` };
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? String(error);
    return { value: null, hint: `set BRIG_API_KEY, or let the CLI read ${file} (${why}; a root daemon's key is readable by root only)` };
  }
}

function unavailable(url: URL, error: NodeJS.ErrnoException): BrigError {
  return new BrigError(
    'BRIG_DAEMON_UNAVAILABLE',
    `no brig daemon answers at ${url.origin} (${error.code ?? error.message})`,
    'start one with `brig serve` (it listens on 127.0.0.1:3000), or set BRIG_URL to where yours listens',
  );
}

/** The daemon's `{code, message, hint}` as a BrigError; E2B's routes put brig's code in `error_code`. */
export function brigErrorFrom(status: number, text: string): BrigError {
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object') body = parsed as Record<string, unknown>;
  } catch {
    // Not JSON: described by its status below.
  }
  const code = [body.error_code, body.code].find((value): value is ErrorCode => typeof value === 'string' && value in ERROR_CODES);
  const message = typeof body.message === 'string' ? body.message : `the daemon answered HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
  if (code) return new BrigError(code, message, typeof body.hint === 'string' ? body.hint : 'see docs/errors.md');
  if (status === 401) return new BrigError('BRIG_UNAUTHORIZED', message, 'check BRIG_API_KEY');
  return new BrigError('BRIG_INTERNAL', message, 'the daemon\'s log may say more; this is likely a bug in brig');
}

export async function readText(stream: Readable, limitBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) throw new BrigError('BRIG_INTERNAL', `the daemon's answer is larger than ${limitBytes} bytes`, 'this is likely a bug in brig');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A path segment for an id or name. */
export function segment(idOrName: string): string {
  return encodeURIComponent(idOrName);
}
