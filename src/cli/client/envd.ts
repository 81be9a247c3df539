import type { IncomingMessage } from 'node:http';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { BrigError, processEvents, encodeEnvelope, signalOfStatus, type EntryInfo, type ProcessEvent, type ProcessSelector, type StartRequest } from '../../protocol/index.ts';
import { brigErrorFrom, readText, segment, type Daemon } from './connection.ts';

/**
 * One sandbox's envd, reached through the daemon's gateway (E2b-Sandbox-Id
 * and the sandbox's access token) with Connect's JSON form, written by hand
 * on src/protocol's codec. Not the e2b SDK: its commands always run
 * `bash -l -c STRING`, where `brig exec` must pass argv as given, and its
 * connect() extends the sandbox's timeout, which `brig exec` must not.
 */

/** A failure envd reported, with its Connect code, for callers that expect some (a missing file, an exited process). */
export class EnvdFailure extends Error {
  constructor(
    readonly connectCode: string,
    message: string,
  ) {
    super(message);
    this.name = 'EnvdFailure';
  }

  /** What brig reports when the caller has nothing more specific to say. */
  toBrigError(doing: string): BrigError {
    if (this.connectCode === 'unauthenticated' || this.connectCode === 'permission_denied') {
      return new BrigError('BRIG_UNAUTHORIZED', `${doing}: ${this.message}`, 'the sandbox refused its own access token: it may have been replaced; try again');
    }
    if (['invalid_argument', 'not_found', 'already_exists', 'failed_precondition', 'out_of_range'].includes(this.connectCode)) {
      return new BrigError('BRIG_USAGE', `${doing}: ${this.message}`, 'check the command and paths: they are as the sandbox sees them (relative ones from /home/user)');
    }
    return new BrigError('BRIG_INTERNAL', `${doing}: ${this.message} (${this.connectCode})`, 'the sandbox\'s log (`brig logs --envd NAME`) may say more');
  }
}

/** HTTP statuses of envd's /files, as Connect codes, so callers test one kind of code. */
const FILE_STATUS: Record<number, string> = { 400: 'invalid_argument', 401: 'unauthenticated', 403: 'permission_denied', 404: 'not_found', 507: 'resource_exhausted' };

export interface Envd {
  /** The sandbox's id (the name given was resolved by the daemon). */
  readonly id: string;
  unary<T>(method: string, message: unknown): Promise<T>;
  /** Process.Start: the process's events as they come, with backpressure; ends after `end`. Aborting closes the stream. */
  start(request: StartRequest, signal?: AbortSignal): AsyncGenerator<ProcessEvent>;
  /** Process.Connect: the events of a process already running, from now on (its `start` first); as start otherwise. */
  connect(process: ProcessSelector, signal?: AbortSignal): AsyncGenerator<ProcessEvent>;
  /** GET /files: the response, its body the file's bytes. */
  download(path: string): Promise<IncomingMessage>;
  /** POST /files: the bytes to `path` (parents made; an existing file keeps its mode). */
  upload(path: string, body: Readable): Promise<void>;
  stat(path: string): Promise<EntryInfo | null>;
}

export async function openEnvd(daemon: Daemon, idOrName: string): Promise<Envd> {
  // GET, not E2B's connect: connecting would extend the sandbox's timeout.
  const detail = await daemon.call<{ sandboxID: string; envdAccessToken: string }>('GET', `/sandboxes/${segment(idOrName)}`);
  const id = detail.sandboxID;
  const headers = { 'e2b-sandbox-id': id, 'x-access-token': detail.envdAccessToken };

  const failure = async (response: IncomingMessage): Promise<Error> => {
    const text = await readText(response, 64 * 1024).catch(() => '');
    const status = response.statusCode ?? 0;
    let body: { code?: unknown; message?: unknown } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Described by the status.
    }
    // The gateway's own refusals carry brig's codes (the sandbox stopped meanwhile: BRIG_SANDBOX_NOT_FOUND).
    if (typeof body.code === 'string' && body.code.startsWith('BRIG_')) return brigErrorFrom(status, text);
    const code = typeof body.code === 'string' ? body.code : (FILE_STATUS[status] ?? 'unknown');
    return new EnvdFailure(code, typeof body.message === 'string' ? body.message : `HTTP ${status}`);
  };

  const unary = async <T>(method: string, message: unknown): Promise<T> => {
    const response = await daemon.send({ method: 'POST', path: `/${method}`, headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(message) });
    if (response.statusCode !== 200) throw await failure(response);
    return JSON.parse(await readText(response, 64 * 1024 * 1024)) as T;
  };

  /** A server stream of process events; `what` names what the events are of, for when the stream is cut. */
  async function* stream(method: 'Start' | 'Connect', message: unknown, what: string, signal?: AbortSignal): AsyncGenerator<ProcessEvent> {
    const response = await daemon.send({
      method: 'POST',
      path: `/process.Process/${method}`,
      headers: { ...headers, 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
      body: encodeEnvelope(message),
      signal,
    });
    if (response.statusCode !== 200) throw await failure(response);
    const cut = new BrigError('BRIG_SANDBOX_NOT_FOUND', `sandbox ${id} stopped answering before the ${what} ended`, 'it may have been stopped, removed or timed out: see `brig ls --all`');
    // Output comes in chunks of at most 64 KiB, base64 in JSON: 1 MiB per message is ample.
    yield* processEvents(response, 1024 * 1024, { failed: (code, message) => new EnvdFailure(code, message), cut: () => cut });
  }

  return {
    id,
    unary,

    start: (request: StartRequest, signal?: AbortSignal) => stream('Start', request, 'command', signal),

    connect: (process: ProcessSelector, signal?: AbortSignal) => stream('Connect', { process }, 'process', signal),

    async download(path: string): Promise<IncomingMessage> {
      const response = await daemon.send({ method: 'GET', path: `/files?${new URLSearchParams({ path })}`, headers });
      if (response.statusCode !== 200) throw await failure(response);
      return response;
    },

    async upload(path: string, body: Readable): Promise<void> {
      const response = await daemon.send({ method: 'POST', path: `/files?${new URLSearchParams({ path })}`, headers: { ...headers, 'content-type': 'application/octet-stream' }, body });
      if (response.statusCode !== 200) throw await failure(response);
      response.resume();
    },

    async stat(path: string): Promise<EntryInfo | null> {
      try {
        return (await unary<{ entry: EntryInfo }>('filesystem.Filesystem/Stat', { path })).entry;
      } catch (error) {
        if (error instanceof EnvdFailure && error.connectCode === 'not_found') return null;
        throw error;
      }
    },
  };
}


/** The shell's convention: the exit code, or 128+N when signal N ended the process. */
export function exitCodeOf(end: { exitCode?: number; exited?: boolean; status?: string }): number {
  if (end.exited !== false) return end.exitCode ?? 0;
  const name = signalOfStatus(end.status ?? '');
  const number = name === null ? undefined : constants.signals[name];
  // An unknown word: still a signal death, reported as SIGKILL's 137 rather than success.
  return 128 + (number ?? 9);
}
