import { EventEmitter } from 'node:events';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { TranscriptEntry } from '../../egress/index.ts';
import { digestExchange } from './llm-digest.ts';
import type { CommandRecorder, CommandRecording, CommandStart, OutputStream } from './recorder-types.ts';
import { TranscriptFile } from './transcript-file.ts';
import type { TimelineBody, TimelineEntry, TimelineQuery, TranscriptLimits } from './transcript-types.ts';
import type { DaemonEvent } from './types.ts';

/**
 * Every sandbox's transcript (transcript-types.ts): the commands and
 * terminals the gateway and the ports carry, with their output and input;
 * the model exchanges of its LLM gateway; its violations and what happened
 * to it. Kept in <state>/transcripts/<id>.jsonl, apart from the sandbox's own
 * directory, so it outlives the sandbox by `retentionMs`; capped per sandbox
 * (transcript-file.ts). Recording never throws into what it records.
 */

export const DEFAULT_TRANSCRIPT_LIMITS: TranscriptLimits = { maxBytes: 32 * 1024 * 1024, retentionMs: 7 * 24 * 3600 * 1000 };
/** Output is kept in entries of at most this many bytes, so no line grows past what a read can peek. */
const CHUNK_BYTES = 16 * 1024;
const FIELD_CHARS = 2000;
/** Events that are the sandbox's own story; commands are recorded whole, jobs have their own record. */
const SANDBOX_EVENTS = new Set(['created', 'killed', 'timeout', 'died', 'oom', 'hung', 'unresponsive']);
const ENDINGS = new Set(['killed', 'timeout', 'died']);
const PRUNE_MS = 3600 * 1000;
const ID = /^[a-z0-9]{1,64}$/;
const NOT_RECORDED: CommandRecording = { started: () => {}, output: () => {}, input: () => {}, ended: () => {} };

export class Transcripts implements CommandRecorder {
  private readonly files = new Map<string, TranscriptFile>();
  private readonly open = new Map<string, Recording>();
  private readonly live = new EventEmitter();
  private readonly pruner: NodeJS.Timeout;

  constructor(
    private readonly dir: string,
    readonly limits: TranscriptLimits,
    /** The sandboxes still running: theirs are never pruned. */
    private readonly running: () => Set<string>,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.live.setMaxListeners(0);
    this.pruner = setInterval(() => this.prune(), PRUNE_MS);
    this.pruner.unref();
  }

  /** A cap of 0 (brig serve --transcript-max 0): nothing is recorded. */
  private get off(): boolean {
    return this.limits.maxBytes === 0;
  }

  command(sandbox: string, start: CommandStart): CommandRecording {
    if (this.off) return NOT_RECORDED;
    return new Recording(this, sandbox, {
      argv: cut(start.argv),
      pty: start.pty,
      via: start.via,
      ...(start.cwd !== undefined ? { cwd: cut(start.cwd) } : {}),
      ...(start.user !== undefined ? { user: cut(start.user) } : {}),
      ...(start.tag !== undefined ? { tag: cut(start.tag) } : {}),
    });
  }

  input(sandbox: string, pid: number, data: Buffer): void {
    if (this.off) return;
    const recording = this.open.get(key(sandbox, pid));
    if (recording) return recording.input(data);
    this.addBulk(sandbox, data, (text) => ({ type: 'input', cmd: null, pid, text }));
  }

  recording(sandbox: string, pid: number): boolean {
    return this.open.has(key(sandbox, pid));
  }

  /** A model exchange through the sandbox's LLM gateway. */
  exchange(entry: TranscriptEntry): void {
    if (this.off) return;
    const digest = digestExchange(entry);
    this.add(entry.sandbox, { type: 'llm', provider: entry.provider, method: entry.method, path: cut(entry.path), status: entry.status, ...digest, inputTokens: entry.usage.inputTokens, outputTokens: entry.usage.outputTokens, totalMs: entry.totalMs, ...(entry.error ? { error: cut(entry.error) } : {}) });
  }

  /** From the event log: violations, and what happened to the sandbox. Its end closes its file. */
  event(event: DaemonEvent): void {
    if (!event.sandbox || this.off) return;
    if (event.type === 'violation') {
      const { kind, target, rule } = event.detail;
      this.add(event.sandbox, { type: 'violation', kind: String(kind), target: cut(String(target)), rule: cut(String(rule)) });
    } else if (SANDBOX_EVENTS.has(event.type)) this.add(event.sandbox, { type: 'event', event: event.type, detail: event.detail });
    if (ENDINGS.has(event.type)) this.closeFile(event.sandbox);
  }

  /** Whether a transcript of this sandbox is kept (it may outlive the sandbox's record). */
  has(sandbox: string): boolean {
    return ID.test(sandbox) && statSafe(this.pathOf(sandbox)) !== null;
  }

  read(sandbox: string, query: TimelineQuery): TimelineEntry[] {
    // Reading a transcript nobody writes (its sandbox ended) keeps nothing of it in memory.
    return (this.files.get(sandbox) ?? this.fileFor(sandbox)).read(query);
  }

  /** Each entry added to this sandbox's transcript from now on; returns what stops it. */
  follow(sandbox: string, listener: (entry: TimelineEntry) => void): () => void {
    this.live.on(sandbox, listener);
    return () => this.live.off(sandbox, listener);
  }

  /** Transcripts of sandboxes that ended more than retentionMs ago (their file untouched since). */
  prune(): void {
    const running = this.running();
    const before = Date.now() - this.limits.retentionMs;
    for (const name of readdirSync(this.dir)) {
      const sandbox = name.replace(/\.jsonl$/, '');
      const stat = statSafe(join(this.dir, name));
      if (running.has(sandbox) || !stat || stat.mtimeMs > before) continue;
      this.closeFile(sandbox);
      rmSync(join(this.dir, name), { force: true });
    }
  }

  close(): void {
    clearInterval(this.pruner);
    for (const sandbox of this.files.keys()) this.closeFile(sandbox);
  }

  /** @internal Recording's way in: a small entry (always kept while the reserve lasts). */
  add(sandbox: string, body: TimelineBody): TimelineEntry | null {
    const result = this.file(sandbox).append(body, false);
    return result === 'dropped' ? null : result;
  }

  /** @internal Output or input, in chunks; false when the cap dropped some of it. */
  addBulk(sandbox: string, data: Buffer | string, body: (text: string) => TimelineBody): boolean {
    const text = typeof data === 'string' ? data : data.toString('utf8');
    for (let at = 0; at < text.length; at += CHUNK_BYTES) if (this.file(sandbox).append(body(text.slice(at, at + CHUNK_BYTES)), true) === 'dropped') return false;
    return true;
  }

  /** @internal */
  opened(sandbox: string, pid: number, recording: Recording | null): void {
    if (recording) this.open.set(key(sandbox, pid), recording);
    else this.open.delete(key(sandbox, pid));
  }

  private file(sandbox: string): TranscriptFile {
    let file = this.files.get(sandbox);
    if (!file) {
      file = this.fileFor(sandbox);
      this.files.set(sandbox, file);
    }
    return file;
  }

  private fileFor(sandbox: string): TranscriptFile {
    // Ids come from the daemon, but a path is built from them: never one that leaves the directory.
    if (!ID.test(sandbox)) throw new Error(`not a sandbox id: ${JSON.stringify(sandbox.slice(0, 80))}`);
    return new TranscriptFile(this.pathOf(sandbox), this.limits.maxBytes, (entry) => this.live.emit(sandbox, entry));
  }

  private closeFile(sandbox: string): void {
    this.files.get(sandbox)?.close();
    this.files.delete(sandbox);
  }

  private pathOf(sandbox: string): string {
    return join(this.dir, `${sandbox}.jsonl`);
  }
}

/** One command or terminal being recorded (CommandRecording). */
class Recording implements CommandRecording {
  private cmd: number | null = null;
  private pid: number | null = null;
  private done = false;
  private dropped = 0;
  private readonly began = Date.now();
  private readonly decoders = new Map<OutputStream | 'input', StringDecoder>();

  constructor(
    private readonly transcripts: Transcripts,
    private readonly sandbox: string,
    private readonly start: CommandStart,
  ) {}

  started(pid: number): void {
    if (this.done || this.cmd !== null) return;
    this.pid = pid;
    this.begin();
    this.transcripts.opened(this.sandbox, pid, this);
  }

  output(stream: OutputStream, data: Buffer): void {
    if (this.done) return;
    this.bulk(stream, data);
  }

  input(data: Buffer): void {
    if (this.done) return;
    this.bulk('input', data);
  }

  ended(end: { exitCode: number | null; status: string | null }): void {
    if (this.done) return;
    for (const [stream, decoder] of this.decoders) {
      const rest = decoder.end();
      if (rest) this.write(stream, rest);
    }
    this.done = true;
    const cmd = this.begin();
    if (this.pid !== null) this.transcripts.opened(this.sandbox, this.pid, null);
    if (cmd === null) return;
    this.transcripts.add(this.sandbox, { type: 'exit', cmd, pid: this.pid, exitCode: end.exitCode, status: end.status === null ? null : cut(end.status), durationMs: Date.now() - this.began, ...(this.dropped > 0 ? { droppedBytes: this.dropped } : {}) });
  }

  /** Its `command` entry, written once (at its start, or when anything about it comes first). */
  private begin(): number | null {
    if (this.cmd === null) this.cmd = this.transcripts.add(this.sandbox, { type: 'command', pid: this.pid, ...this.start })?.seq ?? -1;
    return this.cmd === -1 ? null : this.cmd;
  }

  private bulk(stream: OutputStream | 'input', data: Buffer): void {
    let decoder = this.decoders.get(stream);
    if (!decoder) this.decoders.set(stream, (decoder = new StringDecoder('utf8')));
    const text = decoder.write(data);
    if (text) this.write(stream, text, data.length);
  }

  private write(stream: OutputStream | 'input', text: string, bytes = Buffer.byteLength(text)): void {
    const cmd = this.begin();
    if (cmd === null) return void (this.dropped += bytes);
    if (this.dropped > 0) return void (this.dropped += bytes);
    const kept = this.transcripts.addBulk(this.sandbox, text, (piece) => (stream === 'input' ? { type: 'input', cmd, pid: this.pid ?? 0, text: piece } : { type: 'output', cmd, pid: this.pid, stream, text: piece }));
    if (kept) return;
    this.dropped += bytes;
    this.transcripts.add(this.sandbox, { type: 'truncated', cmd, reason: `the transcript reached its cap (${this.transcripts.limits.maxBytes} bytes, brig serve --transcript-max): this command's output and input from here on were not recorded; its exit entry says how much` });
  }
}

function key(sandbox: string, pid: number): string {
  return `${sandbox}:${pid}`;
}

function cut(text: string): string {
  return text.length > FIELD_CHARS ? `${text.slice(0, FIELD_CHARS)}…` : text;
}

function statSafe(path: string): { mtimeMs: number } | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}
