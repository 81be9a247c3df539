import { StringDecoder } from 'node:string_decoder';
import type { Provider, TokenUsage } from '../types.ts';

/**
 * Counts the tokens of one response while it streams past, never holding it
 * whole: server-sent events are parsed one event at a time, a JSON body is
 * kept up to a cap and then only its tail. The body is hostile input (it
 * comes back through a network the sandbox may have a say in): whatever it
 * holds, the meter never throws and never grows past its bounds; a body it
 * cannot read simply yields no usage.
 */

export interface UsageMeter {
  write(chunk: Buffer): void;
  /** What the response said so far; zeros for what it did not. */
  usage(): TokenUsage;
}

/** One SSE event larger than this is skipped: usage events are a few hundred bytes. */
const MAX_EVENT_CHARS = 1024 * 1024;
/** A JSON body up to this is parsed whole; past it only the tail is kept and searched. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const JSON_TAIL_BYTES = 64 * 1024;

export function usageMeter(provider: Provider, contentType: string | undefined): UsageMeter {
  const counted: Partial<TokenUsage> = {};
  const take = (value: unknown) => {
    const found = usageFrom(provider, value);
    if (found?.inputTokens !== undefined) counted.inputTokens = found.inputTokens;
    if (found?.outputTokens !== undefined) counted.outputTokens = found.outputTokens;
  };
  const reader = /^\s*text\/event-stream/i.test(contentType ?? '') ? sseReader(take) : jsonReader(provider, take);
  return {
    write: (chunk) => {
      try {
        reader.write(chunk);
      } catch {
        // Unreachable by design; still, a meter must never take the stream down with it.
      }
    },
    usage: () => {
      try {
        reader.end();
      } catch {
        // As above.
      }
      return { inputTokens: counted.inputTokens ?? 0, outputTokens: counted.outputTokens ?? 0 };
    },
  };
}

interface Reader {
  write(chunk: Buffer): void;
  /** Called once or more; only the first does anything. */
  end(): void;
}

/** The `data:` of each event (text/event-stream, WHATWG HTML §9.2), handed over parsed as JSON. */
function sseReader(take: (value: unknown) => void): Reader {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let data: string[] = [];
  let dataChars = 0;
  let skipping = false;
  let ended = false;

  const dispatch = () => {
    const text = data.join('\n');
    const wasSkipping = skipping;
    data = [];
    dataChars = 0;
    skipping = false;
    // Only events that carry usage (`usage`, `usageMetadata`) are worth parsing: most are text deltas, and parsing each halves throughput.
    if (wasSkipping || text.length === 0 || !text.includes('usage')) return;
    const value = parseJson(text);
    if (value !== undefined) take(value);
  };

  const line = (text: string) => {
    if (text.length === 0) return dispatch();
    if (skipping || text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    if (field !== 'data') return;
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    dataChars += value.length + 1;
    if (dataChars > MAX_EVENT_CHARS) {
      skipping = true;
      data = [];
      return;
    }
    data.push(value);
  };

  const drain = (final: boolean) => {
    let start = 0;
    // Each search remembers its find: a chunk of many LF-only lines is not rescanned for a CR per line.
    let lf = -2;
    let cr = -2;
    for (;;) {
      if (lf !== -1 && lf < start) lf = pending.indexOf('\n', start);
      if (cr !== -1 && cr < start) cr = pending.indexOf('\r', start);
      const at = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (at === -1) break;
      // A CR at the very end may be the first half of a CRLF split across chunks.
      if (at === cr && at === pending.length - 1 && !final) break;
      line(pending.slice(start, at));
      start = at + (at === cr && pending[at + 1] === '\n' ? 2 : 1);
    }
    pending = pending.slice(start);
    if (pending.length > MAX_EVENT_CHARS) {
      // One endless line: drop it and the event it belongs to.
      pending = '';
      skipping = true;
    }
  };

  return {
    write: (chunk) => {
      if (ended) return;
      pending += decoder.write(chunk);
      drain(false);
    },
    end: () => {
      if (ended) return;
      ended = true;
      pending += decoder.end();
      drain(true);
      // A stream that stops without a final blank line still delivered its last event.
      if (pending.length > 0) line(pending);
      pending = '';
      dispatch();
    },
  };
}

/** A JSON body, or Gemini's streamed JSON array of responses: parsed whole when small enough. */
function jsonReader(provider: Provider, take: (value: unknown) => void): Reader {
  let chunks: Buffer[] = [];
  let size = 0;
  let overflowed = false;
  let ended = false;
  return {
    write: (chunk) => {
      if (ended) return;
      chunks.push(chunk);
      size += chunk.length;
      if (!overflowed && size <= MAX_JSON_BYTES) return;
      overflowed = true;
      const tail = Buffer.concat(chunks);
      chunks = [tail.subarray(Math.max(0, tail.length - JSON_TAIL_BYTES))];
      size = chunks[0]?.length ?? 0;
    },
    end: () => {
      if (ended) return;
      ended = true;
      const text = Buffer.concat(chunks).toString('utf8');
      chunks = [];
      if (overflowed) return void scanTail(provider, text, take);
      const value = parseJson(text);
      if (Array.isArray(value)) for (const element of value) take(element);
      else if (value !== undefined) take(value);
    },
  };
}

/**
 * The last usage object in the tail of a body too large to parse: usage comes
 * last in every provider's answer. A key that only looks like one (inside a
 * string) fails to parse as an object and is passed over.
 */
function scanTail(provider: Provider, text: string, take: (value: unknown) => void): void {
  const key = provider === 'gemini' ? 'usageMetadata' : 'usage';
  const pattern = new RegExp(`"${key}"\\s*:\\s*\\{`, 'g');
  let last: number | null = null;
  for (const match of text.matchAll(pattern)) last = (match.index ?? 0) + match[0].length - 1;
  if (last === null) return;
  const object = balancedObject(text, last);
  const value = object === null ? undefined : parseJson(object);
  if (value !== undefined) take({ [key]: value });
}

/** The `{…}` starting at `start`, by counting braces outside strings; null if it does not close. */
function balancedObject(text: string, start: number): string | null {
  let depth = 0;
  let inString = false;
  for (let at = start; at < text.length; at++) {
    const char = text[at];
    if (inString) {
      if (char === '\\') at++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) return text.slice(start, at + 1);
  }
  return null;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The usage one parsed message reports, field by field: a later message
 * replaces what an earlier one said (every provider reports running totals).
 *
 * Anthropic's input counts cache reads and writes too, as OpenAI's and
 * Gemini's do: otherwise a cached conversation would look almost free to the
 * token budget. Gemini's output counts its thinking, billed as output.
 */
export function usageFrom(provider: Provider, value: unknown): Partial<TokenUsage> | null {
  const message = record(value);
  if (message === undefined) return null;
  switch (provider) {
    case 'anthropic': {
      const usage = record(message.type === 'message_start' ? record(message.message)?.usage : message.usage);
      if (usage === undefined) return null;
      return {
        inputTokens: sum(usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens),
        outputTokens: count(usage.output_tokens),
      };
    }
    case 'openai': {
      // Chat completions: `usage` (the last chunk, with stream_options.include_usage); Responses:
      // `usage` on the JSON body, `response.usage` on response.completed (and .incomplete, .failed).
      const usage = record(message.usage) ?? record(record(message.response)?.usage);
      if (usage === undefined) return null;
      return {
        inputTokens: count(usage.prompt_tokens) ?? count(usage.input_tokens),
        outputTokens: count(usage.completion_tokens) ?? count(usage.output_tokens),
      };
    }
    case 'gemini': {
      const usage = record(message.usageMetadata);
      if (usage === undefined) return null;
      return { inputTokens: count(usage.promptTokenCount), outputTokens: sum(usage.candidatesTokenCount, usage.thoughtsTokenCount) };
    }
  }
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** The sum of the counts present; undefined when none is. */
function sum(...values: unknown[]): number | undefined {
  const counts = values.map(count).filter((value): value is number => value !== undefined);
  return counts.length === 0 ? undefined : counts.reduce((total, value) => total + value, 0);
}
