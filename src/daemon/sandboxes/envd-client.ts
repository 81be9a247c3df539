import { request, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { BrigError, processEvents, SERVICE, encodeEnvelope, type ErrorCode, type ProcessEvent, type ProcessInfo, type ProcessSelector, type ProcessSignal, type PtySize, type StartRequest } from '../../protocol/index.ts';

/**
 * The daemon's own client of one sandbox's envd, on its unix socket (the
 * endpoint the gateway serves), for what the daemon runs there itself: a
 * job's program (put files, start it and follow its events, find and
 * reattach to it after a restart, signal it, fetch files back), the shells
 * behind a sandbox's published ports (input, terminal size). Connect's JSON
 * form on src/protocol's codec.
 */

export interface EnvdEndpoint {
  socketPath: string;
  accessToken: string;
}

export interface EnvdClientOptions {
  /** The code of every error it throws, so each caller's failures keep their own (a job's are BRIG_JOB_FAILED). */
  errorCode: ErrorCode;
  /** The sandbox user the calls act as (E2B's Authorization: Basic "<user>:"); by default envd's own default user. */
  user?: string;
}

/** Output comes in chunks of at most 64 KiB, base64 in JSON: 1 MiB per message is ample. */
const MAX_MESSAGE_BYTES = 1024 * 1024;

export class EnvdClient {
  private readonly code: ErrorCode;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly endpoint: EnvdEndpoint,
    options: EnvdClientOptions,
  ) {
    this.code = options.errorCode;
    this.headers = { 'x-access-token': endpoint.accessToken, ...(options.user === undefined ? {} : { authorization: `Basic ${Buffer.from(`${options.user}:`).toString('base64')}` }) };
  }

  /** Writes `content` to `path` (parents made), as the sandbox's user. */
  async upload(path: string, content: Buffer): Promise<void> {
    const response = await this.send('POST', `/files?${new URLSearchParams({ path })}`, { 'content-type': 'application/octet-stream' }, content);
    await this.expectOk(response, `cannot write ${path} in the sandbox`);
    response.resume();
  }

  /** The file's bytes, at most `maxBytes` (more is BRIG_JOB_ARTIFACT_TOO_LARGE). */
  async download(path: string, maxBytes: number): Promise<Buffer> {
    const response = await this.send('GET', `/files?${new URLSearchParams({ path })}`, {});
    await this.expectOk(response, `cannot read ${path} in the sandbox`);
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      length += chunk.length;
      if (length > maxBytes) {
        response.destroy();
        throw new BrigError('BRIG_JOB_ARTIFACT_TOO_LARGE', `${path} is larger than the ${maxBytes} bytes left for it (64 MiB an artifact, 256 MiB a job)`, "write a smaller file, or collect it some other way (the job's sandbox is gone after it ends)");
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  /**
   * Process.Start: the program's events as they come, pulled one at a time
   * (a caller that stops pulling leaves envd's answer unread, and envd then
   * holds the program's output back). `lifetimeMs` is envd's own deadline
   * for it (it kills the program then, daemon or not); null: none, the
   * program lives as long as the sandbox.
   */
  start(start: StartRequest, lifetimeMs: number | null, signal: AbortSignal): AsyncGenerator<ProcessEvent> {
    return this.stream('Start', start, lifetimeMs === null ? {} : { 'connect-timeout-ms': String(lifetimeMs) }, signal);
  }

  /** Process.Connect: the events of a program already running, from now on. */
  connect(process: ProcessSelector, signal: AbortSignal): AsyncGenerator<ProcessEvent> {
    return this.stream('Connect', { process }, {}, signal);
  }

  async list(): Promise<ProcessInfo[]> {
    return (await this.unary<{ processes?: ProcessInfo[] }>('List', {})).processes ?? [];
  }

  async sendSignal(process: ProcessSelector, signal: ProcessSignal): Promise<void> {
    await this.unary('SendSignal', { process, signal });
  }

  /** Bytes typed into a program's terminal (it runs on a pty). */
  async sendInput(process: ProcessSelector, data: Buffer): Promise<void> {
    await this.unary('SendInput', { process, input: { pty: data.toString('base64') } });
  }

  /** A new size for a program's terminal. */
  async update(process: ProcessSelector, size: PtySize): Promise<void> {
    await this.unary('Update', { process, pty: { size } });
  }

  /**
   * A byte stream to `port` on the sandbox's loopback (envd's CONNECT):
   * what the daemon carries a sandbox port's HTTP and WebSockets on.
   * Nothing listening there is BRIG_PORT_CLOSED, whatever the client's code.
   */
  tunnel(port: number, signal?: AbortSignal): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.endpoint.socketPath, method: 'CONNECT', path: `localhost:${port}`, headers: this.headers, signal });
      req.once('connect', (answer: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (answer.statusCode === 200) {
          if (head.length > 0) socket.unshift(head);
          return resolve(socket);
        }
        socket.destroy();
        const why = String(answer.headers['x-brig-error'] ?? `HTTP ${answer.statusCode}`);
        reject(answer.statusCode === 502 ? new BrigError('BRIG_PORT_CLOSED', `${why} in the sandbox`, `start a server on port ${port} in the sandbox, listening on 0.0.0.0, 127.0.0.1 or ::1`) : new BrigError(this.code, `envd refused a stream to port ${port}: ${why}`, "the sandbox's log (`brig logs --envd`) may say more"));
      });
      req.on('error', (error) => reject(new BrigError(this.code, `cannot reach the sandbox's envd: ${error.message}`, 'it may have ended meanwhile')));
      req.end();
    });
  }

  private async unary<T>(method: string, message: unknown): Promise<T> {
    const response = await this.send('POST', `/${SERVICE.process}/${method}`, { 'content-type': 'application/json' }, Buffer.from(JSON.stringify(message)));
    await this.expectOk(response, `envd's ${method}`);
    return JSON.parse((await this.readAll(response, MAX_MESSAGE_BYTES)).toString()) as T;
  }

  private async *stream(method: string, message: unknown, headers: Record<string, string>, signal: AbortSignal): AsyncGenerator<ProcessEvent> {
    const response = await this.send('POST', `/${SERVICE.process}/${method}`, { 'content-type': 'application/connect+json', 'connect-protocol-version': '1', ...headers }, encodeEnvelope(message), signal);
    await this.expectOk(response, `envd's ${method}`);
    yield* processEvents(response, MAX_MESSAGE_BYTES, {
      failed: (_code, message) => new BrigError(this.code, `envd's ${method}: ${message}`, "the sandbox's log (`brig logs --envd`) may say more"),
      cut: () => new BrigError(this.code, 'the sandbox stopped answering before the program ended', 'it may have been killed or run out of memory: its record says why (`brig ls --all`)'),
    });
  }

  private send(method: string, path: string, headers: Record<string, string>, body?: Buffer, signal?: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.endpoint.socketPath, method, path, headers: { ...headers, ...this.headers }, signal }, resolve);
      req.on('error', (error) => reject(new BrigError(this.code, `cannot reach the sandbox's envd: ${error.message}`, 'it may have ended meanwhile')));
      req.end(body);
    });
  }

  private async expectOk(response: IncomingMessage, doing: string): Promise<void> {
    if (response.statusCode === 200) return;
    const text = (await this.readAll(response, 64 * 1024).catch(() => Buffer.alloc(0))).toString();
    let message = text.slice(0, 500);
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // Said as it came.
    }
    throw new BrigError(this.code, `${doing}: ${message || `HTTP ${response.statusCode}`}`, "the sandbox's log (`brig logs --envd`) may say more");
  }

  private async readAll(response: IncomingMessage, maxBytes: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      length += chunk.length;
      if (length > maxBytes) throw new BrigError(this.code, `envd answered more than ${maxBytes} bytes`, 'this is a bug in brig or a hostile sandbox');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
}
