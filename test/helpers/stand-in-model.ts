import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/**
 * A stand-in for an LLM provider: a real HTTP server on 127.0.0.1 that speaks
 * just enough of four wire formats, streaming (SSE) and not, to walk a real
 * agent CLI through one tool call:
 *
 * - Anthropic Messages      POST …/messages (+ …/messages/count_tokens)  Claude Code, opencode, Crush
 * - OpenAI chat completions POST …/chat/completions                      opencode (openai-compatible), Crush
 * - OpenAI Responses        POST …/responses                             Codex, opencode's openai provider
 * - Gemini                  POST …/models/M:generateContent | :streamGenerateContent | :countTokens   Gemini CLI
 *
 * plus GET …/models (one list that reads as Anthropic's, OpenAI's and
 * Gemini's) and 200 to any HEAD and to GET / (reachability probes: Claude
 * Code sends HEAD <base>/api/hello). Anything else is a 404, recorded.
 * Request bodies may be gzip, deflate or br encoded.
 *
 * The script is fixed. While the conversation holds no tool result, the model
 * calls the agent's own file-writing tool (found by name among the request's
 * `tools`, its arguments named after that tool's schema); an agent that has no
 * such tool but has a shell tool (Codex's exec_command) is asked to run a
 * `printf … > path` command instead. Once a tool result is in, the model
 * answers with `finalText`. A request that offers neither tool (titles,
 * summaries, quota probes) gets `sideText`; one that asks for structured
 * output (Gemini CLI's model router, JSON-schema response formats) gets the
 * smallest JSON its schema allows. Every request is recorded, so a test can
 * assert which key, headers and model reached the provider.
 */

export interface StandInModelOptions {
  /**
   * The file the model asks the agent to write. A relative path is resolved
   * against the working directory the agent's prompt names, when it names one
   * (Claude Code's Write tool wants absolute paths).
   */
  writeFile?: { path: string; content: string };
  /** The model's last answer, after the tool result (default: "Done."). */
  finalText?: string;
  /** The answer to requests that offer no usable tool (default: "OK"). */
  sideText?: string;
  /** Model ids listed by GET …/models (default: a few Claude, GPT and Gemini names). */
  models?: string[];
}

export type StandInRequestKind =
  | 'anthropic-messages'
  | 'anthropic-count-tokens'
  | 'openai-chat'
  | 'openai-responses'
  | 'gemini-generate'
  | 'gemini-count-tokens'
  | 'models'
  | 'other';

export interface StandInRequest {
  method: string;
  /** Path with its query string, e.g. "/v1/messages?beta=true". */
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body, the raw text when it is not JSON, or undefined when empty. */
  body: unknown;
  kind: StandInRequestKind;
  /** The model named in the body or, for Gemini, in the path. */
  model?: string;
  /** True when the answer was an event stream. */
  stream: boolean;
  /** What the stand-in answered: a tool call (with the tool's name), a text, or something else. */
  answer?: { toolCall: string } | { text: string } | 'other';
}

export interface ToolShape {
  /** The tool's name as the agent declared it. */
  name: string;
  /** "write": a whole-file write tool; "shell": a command tool used to write the file. */
  mode: 'write' | 'shell';
  /** Argument names: path and content for "write"; command for "shell". */
  pathKey?: string;
  contentKey?: string;
  commandKey?: string;
  /** True when the shell tool takes its command as an argv array. */
  commandIsArray?: boolean;
}

export interface StandInModel {
  /** http://127.0.0.1:PORT (no trailing slash). Point the agent at `${url}/v1`, `${url}/anthropic`, …: any prefix works. */
  url: string;
  /** Every request received so far, in order. */
  requests: StandInRequest[];
  /** The requests that went to a model endpoint (not count-tokens, models or probes). */
  modelRequests(): StandInRequest[];
  /** The tool the stand-in chose, once a request offered one. */
  tool(): ToolShape | undefined;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

interface Step {
  call?: { name: string; input: Json };
  text: string;
}

const DEFAULT_MODELS = ['claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-1', 'gpt-4o', 'gpt-4o-mini', 'gemini-2.5-pro', 'gemini-2.5-flash'];

/** Tool names taken as "write a whole file", best first (compared lower-cased, with - as _). */
const WRITE_TOOLS = ['write', 'write_file', 'writefile', 'create_file', 'createfile', 'file_write', 'filewrite'];
const PATH_KEYS = ['file_path', 'filePath', 'path', 'absolute_path', 'filename', 'file'];
const CONTENT_KEYS = ['content', 'contents', 'file_text', 'text', 'data'];
/** Tool names taken as "run a shell command", best first. */
const SHELL_TOOLS = ['exec_command', 'shell', 'bash', 'run_shell_command', 'shell_command', 'run_command', 'local_shell'];
const COMMAND_KEYS = ['cmd', 'command', 'commands', 'script'];

const MODEL_KINDS: StandInRequestKind[] = ['anthropic-messages', 'openai-chat', 'openai-responses', 'gemini-generate'];

export async function startStandInModel(options: StandInModelOptions = {}): Promise<StandInModel> {
  const requests: StandInRequest[] = [];
  const finalText = options.finalText ?? 'Done.';
  const sideText = options.sideText ?? 'OK';
  const models = options.models ?? DEFAULT_MODELS;
  let counter = 0;
  let chosenTool: ToolShape | undefined;
  const nextId = (prefix: string): string => `${prefix}_standin${String(++counter).padStart(4, '0')}`;

  const server = createServer((req, res) => {
    readBody(req)
      .then((raw) => {
        const body = parseBody(decode(raw, req.headers['content-encoding']));
        const method = req.method ?? 'GET';
        const path = req.url ?? '/';
        const kind = classify(method, path);
        const record: StandInRequest = { method, path, headers: req.headers, body, kind, stream: false };
        const model = isJson(body) && typeof body.model === 'string' ? body.model : /\/models\/([^/:?]+):/.exec(path)?.[1];
        if (model) record.model = model;
        requests.push(record);
        route(record, isJson(body) ? body : {}, res);
      })
      .catch((error: unknown) => sendJson(res, 500, { error: { type: 'api_error', message: String(error) } }));
  });

  function route(request: StandInRequest, body: Json, res: ServerResponse): void {
    switch (request.kind) {
      case 'anthropic-count-tokens':
        return sendJson(res, 200, { input_tokens: tokens(body) });
      case 'gemini-count-tokens':
        return sendJson(res, 200, { totalTokens: tokens(body) });
      case 'models':
        return sendJson(res, 200, modelList(models));
      case 'anthropic-messages':
        return anthropicMessages(request, body, res);
      case 'openai-chat':
        return openAiChat(request, body, res);
      case 'openai-responses':
        return openAiResponses(request, body, res);
      case 'gemini-generate':
        return gemini(request, body, res);
      default:
        request.answer = 'other';
        if (request.method === 'HEAD' || (request.method === 'GET' && /^\/?(\?.*)?$/.test(request.path))) return sendJson(res, 200, { ok: true });
        return sendJson(res, 404, { type: 'error', error: { type: 'not_found_error', message: `stand-in model: no route for ${request.method} ${request.path}` } });
    }
  }

  /** What the model does next: call a tool, or speak. */
  function decide(request: StandInRequest, tools: unknown, hasResult: boolean, prompt: string[], schema?: unknown): Step {
    const shape = findTool(tools);
    if (shape) chosenTool = shape;
    let step: Step;
    // A request for structured output (routers, classifiers, titles) gets JSON that fits its schema.
    const say = (text: string): Step => ({ text: schema === undefined ? text : JSON.stringify(sampleOf(schema, text)) });
    if (!shape) step = say(sideText);
    else if (!options.writeFile || hasResult) step = say(finalText);
    else {
      const workdir = findWorkingDirectory(prompt);
      const { content } = options.writeFile;
      const path = isAbsolute(options.writeFile.path) || !workdir ? options.writeFile.path : join(workdir, options.writeFile.path);
      step = { call: { name: shape.name, input: toolInput(shape, path, content) }, text: '' };
    }
    request.answer = step.call ? { toolCall: step.call.name } : { text: step.text };
    return step;
  }

  function anthropicMessages(request: StandInRequest, body: Json, res: ServerResponse): void {
    const model = request.model ?? 'claude-sonnet-4-5';
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const format = isJson(body.output_config) ? body.output_config.format : body.output_format;
    const schema = isJson(format) && format.type === 'json_schema' ? (format.schema ?? {}) : undefined;
    const step = decide(request, body.tools, messages.some(hasToolResult), [textOf(body.system), ...messages.map(textOf)], schema);
    const id = nextId('msg');
    const content: Json[] = step.call
      ? [{ type: 'tool_use', id: nextId('toolu'), name: step.call.name, input: step.call.input }]
      : [{ type: 'text', text: step.text }];
    const stopReason = step.call ? 'tool_use' : 'end_turn';
    const usage = { input_tokens: 10, output_tokens: 10, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    if (body.stream !== true) {
      return sendJson(res, 200, { id, type: 'message', role: 'assistant', model, content, stop_reason: stopReason, stop_sequence: null, usage });
    }
    const events: Json[] = [{ type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }];
    content.forEach((block, index) => {
      if (block.type === 'tool_use') {
        events.push({ type: 'content_block_start', index, content_block: { ...block, input: {} } });
        events.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } });
      } else {
        events.push({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
        events.push({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: block.text } });
      }
      events.push({ type: 'content_block_stop', index });
    });
    events.push({ type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } });
    events.push({ type: 'message_stop' });
    sendEvents(request, res, events.map((data) => ({ event: String(data.type), data })));
  }

  function openAiChat(request: StandInRequest, body: Json, res: ServerResponse): void {
    const model = request.model ?? 'gpt-4o';
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const format = isJson(body.response_format) ? body.response_format : undefined;
    const schema = format?.type === 'json_schema' ? (isJson(format.json_schema) ? (format.json_schema.schema ?? {}) : {}) : format?.type === 'json_object' ? {} : undefined;
    const step = decide(request, body.tools, messages.some(hasToolResult), messages.map(textOf), schema);
    const id = nextId('chatcmpl');
    const created = Math.floor(Date.now() / 1000);
    const toolCalls = step.call ? [{ id: nextId('call'), type: 'function', function: { name: step.call.name, arguments: JSON.stringify(step.call.input) } }] : undefined;
    const finishReason = toolCalls ? 'tool_calls' : 'stop';
    const usage = { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 };
    if (body.stream !== true) {
      const message = toolCalls ? { role: 'assistant', content: null, tool_calls: toolCalls } : { role: 'assistant', content: step.text };
      return sendJson(res, 200, { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, finish_reason: finishReason, logprobs: null }], usage });
    }
    const chunk = (delta: Json, finish: string | null): Json => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
    const chunks: Json[] = [chunk({ role: 'assistant', content: '' }, null)];
    chunks.push(toolCalls ? chunk({ tool_calls: toolCalls.map((call, index) => ({ index, ...call })) }, null) : chunk({ content: step.text }, null));
    chunks.push(chunk({}, finishReason));
    if (isJson(body.stream_options) && body.stream_options.include_usage === true) chunks.push({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
    sendEvents(request, res, [...chunks.map((data) => ({ data })), { data: '[DONE]' }]);
  }

  function openAiResponses(request: StandInRequest, body: Json, res: ServerResponse): void {
    const model = request.model ?? 'gpt-4o';
    const input = Array.isArray(body.input) ? body.input : typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : [];
    const format = isJson(body.text) && isJson(body.text.format) ? body.text.format : undefined;
    const schema = format?.type === 'json_schema' ? (format.schema ?? {}) : format?.type === 'json_object' ? {} : undefined;
    const step = decide(request, body.tools, input.some(hasToolResult), [textOf(body.instructions), ...input.map(textOf)], schema);
    const id = nextId('resp');
    const createdAt = Math.floor(Date.now() / 1000);
    const itemId = nextId(step.call ? 'fc' : 'msg');
    const item: Json = step.call
      ? { type: 'function_call', id: itemId, call_id: nextId('call'), name: step.call.name, arguments: JSON.stringify(step.call.input), status: 'completed' }
      : { type: 'message', id: itemId, role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: step.text, annotations: [], logprobs: [] }] };
    const usage = { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 10, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 20 };
    const response = (status: string, output: Json[]): Json => ({
      id, object: 'response', created_at: createdAt, status, model, output, parallel_tool_calls: true, tool_choice: 'auto', tools: [], error: null, incomplete_details: null,
      ...(status === 'completed' ? { usage } : {}),
    });
    if (body.stream !== true) return sendJson(res, 200, response('completed', [item]));
    const events: Json[] = [
      { type: 'response.created', response: response('in_progress', []) },
      { type: 'response.in_progress', response: response('in_progress', []) },
    ];
    if (step.call) {
      events.push({ type: 'response.output_item.added', output_index: 0, item: { ...item, arguments: '', status: 'in_progress' } });
      events.push({ type: 'response.function_call_arguments.delta', item_id: itemId, output_index: 0, delta: item.arguments });
      events.push({ type: 'response.function_call_arguments.done', item_id: itemId, output_index: 0, arguments: item.arguments });
    } else {
      const part = { type: 'output_text', text: '', annotations: [], logprobs: [] };
      events.push({ type: 'response.output_item.added', output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
      events.push({ type: 'response.content_part.added', item_id: itemId, output_index: 0, content_index: 0, part });
      events.push({ type: 'response.output_text.delta', item_id: itemId, output_index: 0, content_index: 0, delta: step.text, logprobs: [] });
      events.push({ type: 'response.output_text.done', item_id: itemId, output_index: 0, content_index: 0, text: step.text, logprobs: [] });
      events.push({ type: 'response.content_part.done', item_id: itemId, output_index: 0, content_index: 0, part: { ...part, text: step.text } });
    }
    events.push({ type: 'response.output_item.done', output_index: 0, item });
    events.push({ type: 'response.completed', response: response('completed', [item]) });
    sendEvents(request, res, events.map((data, sequence) => ({ event: String(data.type), data: { ...data, sequence_number: sequence } })));
  }

  function gemini(request: StandInRequest, body: Json, res: ServerResponse): void {
    const contents = Array.isArray(body.contents) ? body.contents : [];
    const config = isJson(body.generationConfig) ? body.generationConfig : {};
    const schema = config.responseMimeType === 'application/json' ? (config.responseJsonSchema ?? config.responseSchema ?? {}) : undefined;
    const step = decide(request, body.tools, contents.some(hasToolResult), [textOf(body.systemInstruction ?? body.system_instruction), ...contents.map(textOf)], schema);
    const part = step.call ? { functionCall: { name: step.call.name, args: step.call.input } } : { text: step.text };
    const answer = {
      candidates: [{ content: { role: 'model', parts: [part] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 10, totalTokenCount: 20 },
      modelVersion: request.model ?? 'gemini-2.5-pro',
      responseId: nextId('gemini'),
    };
    if (!request.path.includes(':streamGenerateContent')) return sendJson(res, 200, answer);
    if (!/[?&]alt=sse\b/.test(request.path)) {
      // Without alt=sse the stream is one JSON array of responses.
      request.stream = true;
      return sendJson(res, 200, [answer]);
    }
    sendEvents(request, res, [{ data: answer }]);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    modelRequests: () => requests.filter((r) => MODEL_KINDS.includes(r.kind)),
    tool: () => chosenTool,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function classify(method: string, url: string): StandInRequestKind {
  const path = url.split('?')[0] ?? '';
  if (method === 'POST') {
    if (path.endsWith('/messages/count_tokens')) return 'anthropic-count-tokens';
    if (path.endsWith('/messages')) return 'anthropic-messages';
    if (path.endsWith('/chat/completions')) return 'openai-chat';
    if (path.endsWith('/responses')) return 'openai-responses';
    if (/:(stream)?generateContent$/i.test(path)) return 'gemini-generate';
    if (/:countTokens$/.test(path)) return 'gemini-count-tokens';
  }
  if (method === 'GET' && /\/models(\/[^/:]+)?$/.test(path)) return 'models';
  return 'other';
}

/**
 * The agent's whole-file write tool or, failing that, its shell tool, from
 * Anthropic ({name, input_schema}), OpenAI chat ({function: {name, parameters}}),
 * OpenAI Responses ({name, parameters}) or Gemini ({functionDeclarations: […]})
 * tool definitions.
 */
export function findTool(tools: unknown): ToolShape | undefined {
  const candidates = toolDefinitions(tools);
  const named = (names: string[]) =>
    names.flatMap((wanted) => candidates.filter((tool) => tool.name.toLowerCase().replace(/-/g, '_') === wanted));
  for (const tool of named(WRITE_TOOLS)) {
    const pathKey = PATH_KEYS.find((key) => key in tool.properties);
    const contentKey = CONTENT_KEYS.find((key) => key in tool.properties);
    if (pathKey && contentKey) return { name: tool.name, mode: 'write', pathKey, contentKey };
  }
  for (const tool of named(SHELL_TOOLS)) {
    const commandKey = COMMAND_KEYS.find((key) => key in tool.properties);
    if (!commandKey) continue;
    const schema = tool.properties[commandKey];
    return { name: tool.name, mode: 'shell', commandKey, commandIsArray: isJson(schema) && schema.type === 'array' };
  }
  return undefined;
}

function toolDefinitions(tools: unknown): { name: string; properties: Json }[] {
  if (!Array.isArray(tools)) return [];
  return tools.flatMap((tool): { name: string; properties: Json }[] => {
    if (!isJson(tool)) return [];
    const declarations = tool.functionDeclarations ?? tool.function_declarations;
    if (Array.isArray(declarations)) return toolDefinitions(declarations);
    const fn = isJson(tool.function) ? tool.function : tool;
    const schema = [fn.input_schema, fn.parameters, fn.parametersJsonSchema, fn.inputSchema].find(isJson);
    if (typeof fn.name !== 'string' || !schema) return [];
    return [{ name: fn.name, properties: isJson(schema.properties) ? schema.properties : {} }];
  });
}

function toolInput(shape: ToolShape, path: string, content: string): Json {
  if (shape.mode === 'write') return { [shape.pathKey ?? 'path']: path, [shape.contentKey ?? 'content']: content };
  const script = `printf '%s' ${shellQuote(content)} > ${shellQuote(path)}`;
  return { [shape.commandKey ?? 'command']: shape.commandIsArray ? ['bash', '-lc', script] : script };
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** True when a message (any of the four formats) carries a tool result. */
function hasToolResult(message: unknown): boolean {
  if (!isJson(message)) return false;
  if (message.role === 'tool' || message.type === 'function_call_output' || message.type === 'custom_tool_call_output') return true;
  const parts = Array.isArray(message.content) ? message.content : Array.isArray(message.parts) ? message.parts : [];
  return parts.some((part) => isJson(part) && (part.type === 'tool_result' || part.type === 'tool-result' || isJson(part.functionResponse)));
}

/** The agent's working directory, as its prompt states it ("Primary working directory: /x", "Working directory: /x", "<cwd>/x</cwd>"). */
function findWorkingDirectory(texts: string[]): string | undefined {
  for (const text of texts) {
    const match = /(?:working directory|cwd)(?:\s*[:=]\s*|>)`?(\/[^\s`'"<>]*)/i.exec(text);
    if (match?.[1]) return match[1].replace(/[.,;:)]+$/, '');
  }
  return undefined;
}

/** The text a message, system prompt or content holds: strings, text blocks and parts, joined. */
function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(textOf).join('\n');
  if (!isJson(value)) return '';
  if (typeof value.text === 'string') return value.text;
  return textOf(value.content ?? value.parts);
}

/**
 * The smallest value that fits a JSON schema (or Gemini's OpenAPI-style one,
 * with upper-case types): required properties only, first enum value, lowest
 * number allowed, empty arrays, `text` for strings.
 */
export function sampleOf(schema: unknown, text: string): unknown {
  if (!isJson(schema)) return {};
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if ('const' in schema) return schema.const;
  const variants = [schema.anyOf, schema.oneOf].find(Array.isArray);
  if (variants && variants.length > 0) return sampleOf(variants[0], text);
  const type = (Array.isArray(schema.type) ? schema.type[0] : schema.type) as unknown;
  switch (typeof type === 'string' ? type.toLowerCase() : isJson(schema.properties) ? 'object' : '') {
    case 'string':
      return text;
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum : 1;
    case 'boolean':
      return false;
    case 'null':
      return null;
    case 'array':
      return typeof schema.minItems === 'number' && schema.minItems > 0 ? Array.from({ length: schema.minItems }, () => sampleOf(schema.items, text)) : [];
    case 'object': {
      const properties = isJson(schema.properties) ? schema.properties : {};
      const required = Array.isArray(schema.required) ? schema.required.filter((key): key is string => typeof key === 'string') : Object.keys(properties);
      return Object.fromEntries(required.map((key) => [key, sampleOf(properties[key], text)]));
    }
    default:
      return {};
  }
}

function tokens(body: Json): number {
  return Math.max(1, Math.round(JSON.stringify(body).length / 4));
}

function modelList(ids: string[]): Json {
  // One answer that reads as an Anthropic, an OpenAI and a Gemini models list.
  const data = ids.map((id) => ({ id, type: 'model', object: 'model', display_name: id, created_at: '2025-01-01T00:00:00Z', created: 1735689600, owned_by: 'stand-in' }));
  const gemini = ids.map((id) => ({ name: `models/${id}`, displayName: id, supportedGenerationMethods: ['generateContent', 'countTokens'] }));
  return { object: 'list', data, has_more: false, first_id: ids[0] ?? null, last_id: ids[ids.length - 1] ?? null, models: gemini };
}

function sendEvents(request: StandInRequest, res: ServerResponse, events: { event?: string; data: unknown }[]): void {
  request.stream = true;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  for (const { event, data } of events) {
    res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }
  res.end();
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function decode(raw: Buffer, encoding: string | undefined): string {
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
      return gunzipSync(raw).toString('utf8');
    case 'deflate':
      return inflateSync(raw).toString('utf8');
    case 'br':
      return brotliDecompressSync(raw).toString('utf8');
    default:
      return raw.toString('utf8');
  }
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function isJson(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
