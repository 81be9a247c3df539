import type { TranscriptEntry } from '../../egress/index.ts';

/**
 * An LLM exchange in short, for a sandbox's timeline: the model, the last
 * thing asked (the prompt, or the tool results the agent sends back) and
 * what was answered (text, and each tool call with its arguments), from
 * the bodies the gateway recorded. Anthropic's Messages, OpenAI's chat
 * completions and Responses, and Gemini, whole or streamed (SSE). What it
 * cannot read it says so rather than guessing; every string is cut short.
 */

const DIGEST_CHARS = 4000;

export interface LlmDigest {
  model: string | null;
  asked: string;
  answered: string;
}

type Json = Record<string, unknown>;

export function digestExchange(entry: TranscriptEntry): LlmDigest {
  const request = parseObject(entry.request);
  const model = typeof request?.model === 'string' ? request.model : (/\/models\/([^/:?]+)/.exec(entry.path)?.[1] ?? null);
  return {
    model: model === null ? null : model.slice(0, 200),
    asked: cut(request ? lastAsked(request) : entry.request.length > 0 ? '[a request that is not JSON]' : ''),
    answered: cut(entry.error ? `[error] ${entry.error}` : answered(entry.response)),
  };
}

/** The last message of the conversation: what this exchange adds to it. */
function lastAsked(request: Json): string {
  const messages = (Array.isArray(request.messages) ? request.messages : Array.isArray(request.contents) ? request.contents : Array.isArray(request.input) ? request.input : null) as unknown[] | null;
  if (typeof request.input === 'string') return request.input;
  if (!messages || messages.length === 0) return typeof request.prompt === 'string' ? request.prompt : '';
  const last = messages.at(-1) as Json;
  if (last.type === 'function_call_output') return `[tool result] ${textOf(last.output)}`;
  if (last.role === 'tool') return `[tool result] ${textOf(last.content)}`;
  return textOf(last.content ?? last.parts);
}

/** Claude Code's context blocks (skills, the date) before each prompt: not what the agent asked. */
const REMINDER = /^\s*<system-reminder>[\s\S]*<\/system-reminder>\s*$/;

/** Text of a message's content: a string, or blocks (text, tool results, function responses). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return content === undefined ? '' : JSON.stringify(content);
  const said = content.filter((block: Json) => !(typeof block?.text === 'string' && REMINDER.test(block.text)));
  return (said.length > 0 ? said : content)
    .map((block: Json) => {
      if (typeof block === 'string') return block;
      if (typeof block.text === 'string') return block.text;
      if (block.type === 'tool_result') return `[tool result] ${textOf(block.content)}`;
      if (block.type === 'tool_use') return `[tool ${String(block.name)}] ${JSON.stringify(block.input)}`;
      if (block.functionResponse) return `[tool result] ${JSON.stringify((block.functionResponse as Json).response)}`;
      if (block.functionCall) return `[tool ${String((block.functionCall as Json).name)}] ${JSON.stringify((block.functionCall as Json).args)}`;
      return '';
    })
    .filter(Boolean)
    .join('\n');
}

/** What the model answered, from one JSON body or the events of a stream. */
function answered(response: string): string {
  const whole = parseObject(response);
  const messages = whole ? [whole] : sseData(response);
  if (messages.length === 0) return response.length > 0 ? '[an answer that is neither JSON nor a stream of it]' : '';
  const parts = new Map<string, { text: string; tool: string | null; args: string }>();
  const part = (key: string) => {
    let found = parts.get(key);
    if (!found) parts.set(key, (found = { text: '', tool: null, args: '' }));
    return found;
  };
  for (const message of messages) {
    // Anthropic, whole and streamed.
    if (Array.isArray(message.content) && message.role === 'assistant') (message.content as Json[]).forEach((block, index) => addBlock(part(`a${index}`), block));
    if (message.type === 'content_block_start') addBlock(part(`a${String(message.index)}`), message.content_block as Json);
    if (message.type === 'content_block_delta') {
      const delta = message.delta as Json;
      const target = part(`a${String(message.index)}`);
      if (typeof delta.text === 'string') target.text += delta.text;
      if (typeof delta.partial_json === 'string') target.args += delta.partial_json;
    }
    // OpenAI chat completions, whole (message) and streamed (delta).
    for (const choice of (Array.isArray(message.choices) ? message.choices : []) as Json[]) {
      const said = (choice.message ?? choice.delta) as Json | undefined;
      if (!said) continue;
      if (typeof said.content === 'string') part('o').text += said.content;
      for (const call of (Array.isArray(said.tool_calls) ? said.tool_calls : []) as Json[]) {
        const fn = (call.function ?? {}) as Json;
        const target = part(`o${String(call.index ?? call.id)}`);
        if (typeof fn.name === 'string') target.tool = fn.name;
        if (typeof fn.arguments === 'string') target.args += fn.arguments;
      }
    }
    // OpenAI Responses: the whole response, or the one its stream completes with.
    const responses = (message.object === 'response' ? message : message.type === 'response.completed' ? message.response : null) as Json | null;
    ((responses?.output ?? []) as Json[]).forEach((item, index) => {
      const target = part(`r${index}`);
      if (item.type === 'function_call') {
        target.tool = String(item.name);
        target.args = String(item.arguments ?? '');
      } else target.text += textOf(item.content);
    });
    // Gemini.
    for (const candidate of (Array.isArray(message.candidates) ? message.candidates : []) as Json[]) {
      ((candidate.content as Json | undefined)?.parts as Json[] | undefined)?.forEach((piece, index) => {
        if (typeof piece.text === 'string') part('g').text += piece.text;
        if (piece.functionCall) {
          const call = piece.functionCall as Json;
          const target = part(`g${index}`);
          target.tool = String(call.name);
          target.args = JSON.stringify(call.args ?? {});
        }
      });
    }
  }
  return [...parts.values()].map((each) => (each.tool !== null ? `[tool ${each.tool}] ${each.args}` : each.text)).filter(Boolean).join('\n');
}

function addBlock(target: { text: string; tool: string | null; args: string }, block: Json | undefined): void {
  if (!block) return;
  if (block.type === 'text' && typeof block.text === 'string') target.text += block.text;
  if (block.type === 'tool_use') {
    target.tool = String(block.name);
    // Streamed, the input comes in deltas after an empty start.
    const input = block.input && Object.keys(block.input).length > 0 ? JSON.stringify(block.input) : '';
    target.args += input;
  }
}

function sseData(text: string): Json[] {
  const found: Json[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const parsed = parseObject(line.slice(5).trim());
    if (parsed) found.push(parsed);
  }
  return found;
}

function parseObject(text: string): Json | null {
  if (!text.trimStart().startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
  } catch {
    return null;
  }
}

function cut(text: string): string {
  return text.length > DIGEST_CHARS ? `${text.slice(0, DIGEST_CHARS)}… [${text.length - DIGEST_CHARS} more characters]` : text;
}
