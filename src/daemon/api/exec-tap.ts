import type { IncomingMessage } from 'node:http';
import type { ActivityBoard, CommandRecording, EventLog, Transcripts } from '../timeline/index.ts';

/**
 * What the gateway sees of commands, read off the streams as they pass and
 * never holding them up: process.Process/Start gives `exec.started` and
 * `exec.ended` events, the activity hung detection watches, and the
 * command's record in the sandbox's transcript (argv, user, cwd, output,
 * exit); Connect to a command nobody records any more is recorded as a
 * continuation; SendInput and StreamInput give a terminal's input.
 *
 * Everything here comes from the sandbox or its client: envelopes are parsed
 * only up to PARSE_BYTES (a larger one is counted, not read), fields are
 * checked and cut, and a stream that says `end` twice ends the record once.
 */

const TAPPED = /^\/process\.Process\/(Start|Connect|SendInput|StreamInput)(?:\?|$)/;
/** The request's first envelope (the command): argv and environment fit; a longer one is named without its arguments. */
const REQUEST_PEEK_BYTES = 64 * 1024;
/** envd sends output in chunks of at most 64 KiB, base64 in JSON; anything larger is not envd's and goes unread. */
const PARSE_BYTES = 256 * 1024;
const ARGV_CHARS = 2000;

export interface TapTargets {
  events: EventLog;
  activity: ActivityBoard;
  transcripts: Transcripts;
}

type Method = 'Start' | 'Connect' | 'SendInput' | 'StreamInput';
type Json = Record<string, unknown>;

/** The process RPC this path calls, when it is one the tap reads. */
export function tappedMethod(path: string): Method | null {
  return (TAPPED.exec(path)?.[1] as Method | undefined) ?? null;
}

/** Call before the request is piped on (its bytes are read as they go); the result takes envd's answer when it is a 200. */
export function tap(method: Method, targets: TapTargets, sandbox: string, client: IncomingMessage): (answer: IncomingMessage) => void {
  if (method === 'SendInput' || method === 'StreamInput') return tapInput(targets, sandbox, client);
  let request: Json | null = null;
  walkEnvelopes(client, REQUEST_PEEK_BYTES, (payload) => (request ??= payload ? parse(payload) : {}));
  return (answer) => (method === 'Start' ? followStart(targets, sandbox, client, () => request ?? {}, answer) : followConnect(targets, sandbox, () => request ?? {}, answer));
}

function followStart(targets: TapTargets, sandbox: string, client: IncomingMessage, request: () => Json, answer: IncomingMessage): void {
  const { events, activity, transcripts } = targets;
  const began = Date.now();
  let pid: number | null = null;
  let recording: CommandRecording | null = null;
  let ended = false;
  // The stream's end is the command's end for the activity board and the record, however it came (envd gone, the client gone).
  answer.once('close', () => {
    if (pid !== null) activity.ended(sandbox);
    recording?.ended({ exitCode: null, status: null });
  });
  followEvents(answer, (event) => {
    if (event === 'unread') return activity.output(sandbox);
    if (event.data) {
      activity.output(sandbox);
      return recordOutput(recording, event.data);
    }
    if (event.start && pid === null && Number.isInteger(event.start.pid)) {
      pid = event.start.pid as number;
      const asked = command(request(), client);
      recording = transcripts.command(sandbox, { ...asked, via: 'api' });
      recording.started(pid);
      activity.started(sandbox);
      const { user: _user, ...said } = asked;
      events.record('exec.started', { sandbox }, { pid, ...said });
    } else if (event.end && pid !== null && recording && !ended) {
      // Once: a stream that says `end` again (envd is the sandbox's) must not flood the event log.
      ended = true;
      const end = endOf(event.end);
      recording.ended(end);
      events.record('exec.ended', { sandbox }, { pid, ...end, exited: event.end.exited !== false, durationMs: Date.now() - began });
    }
  });
}

/** A Connect to a command whose own record has ended (its Start stream gone): the rest of its output, as a continuation. */
function followConnect(targets: TapTargets, sandbox: string, request: () => Json, answer: IncomingMessage): void {
  let recording: CommandRecording | null = null;
  answer.once('close', () => recording?.ended({ exitCode: null, status: null }));
  followEvents(answer, (event) => {
    if (event === 'unread') return;
    if (event.start && recording === null && Number.isInteger(event.start.pid)) {
      const pid = event.start.pid as number;
      if (targets.transcripts.recording(sandbox, pid)) return;
      const selector = (request().process ?? {}) as Json;
      recording = targets.transcripts.command(sandbox, { argv: `[reconnected to ${typeof selector.tag === 'string' ? `tag ${selector.tag.slice(0, 100)}` : `pid ${pid}`}]`, pty: false, via: 'api' });
      recording.started(pid);
    } else if (event.data) recordOutput(recording, event.data);
    else if (event.end) recording?.ended(endOf(event.end));
  });
}

function tapInput(targets: TapTargets, sandbox: string, client: IncomingMessage): (answer: IncomingMessage) => void {
  const inputs: Array<{ pid: number; data: Buffer }> = [];
  let pid: number | null = null;
  // A stream of input lasts as long as the terminal: each message is recorded as it passes, never held.
  const streaming = String(client.headers['content-type']).startsWith('application/connect+json');
  const take = (message: Json | null): void => {
    const start = (message?.start as Json | undefined)?.process as Json | undefined;
    if (start && Number.isInteger(start.pid)) pid = start.pid as number;
    const selector = message?.process as Json | undefined;
    const target = selector && Number.isInteger(selector.pid) ? (selector.pid as number) : pid;
    const input = ((message?.data as Json | undefined)?.input ?? message?.input) as Json | undefined;
    const base64 = input?.pty ?? input?.stdin;
    if (target === null || typeof base64 !== 'string') return;
    if (streaming) targets.transcripts.input(sandbox, target, Buffer.from(base64, 'base64'));
    else inputs.push({ pid: target, data: Buffer.from(base64, 'base64') });
  };
  // SendInput's body is one JSON message (unenveloped); StreamInput's are enveloped.
  if (streaming) walkEnvelopes(client, PARSE_BYTES, (payload) => take(payload ? parse(payload) : null));
  else if (String(client.headers['content-type']).startsWith('application/json')) {
    const chunks: Buffer[] = [];
    let length = 0;
    client.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= PARSE_BYTES) chunks.push(chunk);
    });
    client.once('end', () => length <= PARSE_BYTES && take(parse(Buffer.concat(chunks))));
  }
  // SendInput's counts once envd took it: a refused one was never typed into anything.
  return (answer) => answer.once('end', () => inputs.splice(0).forEach((each) => targets.transcripts.input(sandbox, each.pid, each.data)));
}

function recordOutput(recording: CommandRecording | null, data: Record<string, unknown>): void {
  for (const stream of ['stdout', 'stderr', 'pty'] as const) if (typeof data[stream] === 'string') recording?.output(stream, Buffer.from(data[stream], 'base64'));
}

function endOf(end: Record<string, unknown>): { exitCode: number | null; status: string | null } {
  return { exitCode: Number.isInteger(end.exitCode) ? (end.exitCode as number) : null, status: typeof end.status === 'string' ? end.status.slice(0, 100) : null };
}

/** What the Start request asked for: the command and its arguments, cut short; who runs it, where; a terminal or not. */
function command(message: Json, client: IncomingMessage): { argv: string; cwd?: string; user?: string; pty: boolean; tag?: string } {
  const process = message.process as { cmd?: unknown; args?: unknown; cwd?: unknown } | undefined;
  const args = Array.isArray(process?.args) ? process.args.filter((arg): arg is string => typeof arg === 'string') : [];
  const argv = typeof process?.cmd === 'string' ? [process.cmd, ...args].join(' ') : '[a command too long to read]';
  const user = /^Basic\s+([A-Za-z0-9+/=]+)$/.exec(String(client.headers.authorization ?? '').trim())?.[1];
  const name = user ? Buffer.from(user, 'base64').toString('utf8').split(':')[0] : undefined;
  return {
    argv: argv.length > ARGV_CHARS ? `${argv.slice(0, ARGV_CHARS)}…` : argv,
    ...(typeof process?.cwd === 'string' ? { cwd: process.cwd.slice(0, 500) } : {}),
    ...(name ? { user: name.slice(0, 100) } : {}),
    pty: message.pty !== undefined,
    ...(typeof message.tag === 'string' ? { tag: message.tag.slice(0, 100) } : {}),
  };
}

/** The process events of an answer stream; 'unread' for an envelope too large to parse (output all the same). */
function followEvents(answer: IncomingMessage, listener: (event: Record<string, Json> | 'unread') => void): void {
  walkEnvelopes(answer, PARSE_BYTES, (payload) => {
    if (payload === null) return listener('unread');
    const event = parse(payload)?.event;
    if (event !== null && typeof event === 'object' && !Array.isArray(event)) listener(event as Record<string, Json>);
  });
}

/** Each envelope of a Connect stream as it streams past: its payload, or null for one larger than `parseBytes` (skipped by its length, unread). */
function walkEnvelopes(stream: IncomingMessage, parseBytes: number, envelope: (payload: Buffer | null) => void): void {
  let header = Buffer.alloc(0);
  let remaining = 0;
  let keep: Buffer[] | null = null;
  stream.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (remaining === 0) {
        const need = 5 - header.length;
        header = Buffer.concat([header, chunk.subarray(at, at + need)]);
        at += Math.min(need, chunk.length - at);
        if (header.length < 5) return;
        remaining = header.readUInt32BE(1);
        keep = remaining <= parseBytes ? [] : null;
        header = Buffer.alloc(0);
        if (keep === null) envelope(null);
        if (remaining === 0) {
          envelope(Buffer.alloc(0));
          continue;
        }
      }
      const piece = chunk.subarray(at, at + remaining);
      at += piece.length;
      remaining -= piece.length;
      keep?.push(piece);
      if (remaining === 0 && keep) envelope(Buffer.concat(keep));
    }
  });
}

function parse(payload: Buffer): Json | null {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
  } catch {
    return null;
  }
}
