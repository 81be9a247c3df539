import type { IncomingMessage } from 'node:http';
import type { ActivityBoard, EventLog } from '../timeline/index.ts';

/**
 * Commands started through the gateway (process.Process/Start), as events:
 * `exec.started` with what ran, `exec.ended` with how it ended. Read off
 * the streams as they pass, never held up: the request's first envelope
 * (the command) is peeked, and on the answer only small envelopes are
 * parsed — a command's start and end are a few dozen bytes, its output
 * (base64 in larger ones) is skipped by length without being looked at.
 * What comes from envd is the sandbox's word: fields are checked and cut.
 */

const START_PATH = /^\/process\.Process\/Start(?:\?|$)/;
/** The command's envelope: argv and environment fit; a longer one is named without its arguments. */
const REQUEST_PEEK_BYTES = 64 * 1024;
/** Start and end events are small; anything larger is output. */
const SMALL_ENVELOPE = 2048;
const ARGV_CHARS = 2000;

export function isStart(path: string): boolean {
  return START_PATH.test(path);
}

/** Call before the request is piped on (its first bytes are peeked as they go); the result takes envd's answer. */
export function tapStart(events: EventLog, activity: ActivityBoard, sandbox: string, client: IncomingMessage): (answer: IncomingMessage) => void {
  let requested: Record<string, unknown> = {};
  let peeked = Buffer.alloc(0);
  const peek = (chunk: Buffer): void => {
    peeked = Buffer.concat([peeked, chunk.subarray(0, REQUEST_PEEK_BYTES - peeked.length)]);
    if (peeked.length >= REQUEST_PEEK_BYTES) client.off('data', peek);
  };
  client.on('data', peek);
  const began = Date.now();
  let pid: number | null = null;
  let ended = false;
  const envelope = (payload: Buffer | null): void => {
    // A large envelope is output; a small one may be too (keep-alives are not: a sleeping command is silent).
    if (payload === null) return activity.output(sandbox);
    if (pid === null && peeked.length > 0) {
      requested = command(peeked);
      client.off('data', peek);
    }
    const event = parse(payload)?.event as Record<string, Record<string, unknown>> | undefined;
    if (event?.data) activity.output(sandbox);
    else if (event?.start && Number.isInteger(event.start.pid) && pid === null) {
      pid = event.start.pid as number;
      activity.started(sandbox);
      events.record('exec.started', { sandbox }, { pid, ...requested });
    } else if (event?.end && pid !== null && !ended) {
      // Once: a stream that says `end` again (envd is the sandbox's) must not flood the event log.
      ended = true;
      const { exitCode, exited, status } = event.end;
      events.record('exec.ended', { sandbox }, { pid, exitCode: Number.isInteger(exitCode) ? exitCode : null, exited: exited !== false, status: typeof status === 'string' ? status.slice(0, 100) : null, durationMs: Date.now() - began });
    }
  };
  return (answer) => {
    // The stream's end is the command's end for the activity board, however it came (envd gone, the client gone).
    answer.once('close', () => {
      if (pid !== null) activity.ended(sandbox);
    });
    walkEnvelopes(answer, envelope);
  };
}

/** What the Start request asked for, from its first envelope: the command and its arguments, cut short; a terminal or not. */
function command(body: Buffer): Record<string, unknown> {
  if (body.length < 5) return {};
  const length = body.readUInt32BE(1);
  const message = parse(body.subarray(5, 5 + length)) as { process?: { cmd?: unknown; args?: unknown; cwd?: unknown }; pty?: unknown; tag?: unknown } | null;
  const process = message?.process;
  if (!process || typeof process.cmd !== 'string') return {};
  const args = Array.isArray(process.args) ? process.args.filter((arg): arg is string => typeof arg === 'string') : [];
  const argv = [process.cmd, ...args].join(' ');
  return {
    argv: argv.length > ARGV_CHARS ? `${argv.slice(0, ARGV_CHARS)}…` : argv,
    ...(typeof process.cwd === 'string' ? { cwd: process.cwd.slice(0, 500) } : {}),
    pty: message.pty !== undefined,
    ...(typeof message.tag === 'string' ? { tag: message.tag.slice(0, 100) } : {}),
  };
}

/** Each envelope as the answer streams past: a small one's payload, null for a large one (skipped by its length, unread). */
function walkEnvelopes(answer: IncomingMessage, envelope: (payload: Buffer | null) => void): void {
  let header = Buffer.alloc(0);
  let remaining = 0;
  let keep: Buffer[] | null = null;
  answer.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (remaining === 0) {
        const need = 5 - header.length;
        header = Buffer.concat([header, chunk.subarray(at, at + need)]);
        at += Math.min(need, chunk.length - at);
        if (header.length < 5) return;
        remaining = header.readUInt32BE(1);
        keep = remaining <= SMALL_ENVELOPE ? [] : null;
        header = Buffer.alloc(0);
        if (keep === null) envelope(null);
        if (remaining === 0) continue;
      }
      const piece = chunk.subarray(at, at + remaining);
      at += piece.length;
      remaining -= piece.length;
      keep?.push(piece);
      if (remaining === 0 && keep) envelope(Buffer.concat(keep));
    }
  });
}

function parse(payload: Buffer): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
