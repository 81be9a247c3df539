import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { usageMeter } from '../../src/egress/gateway/index.ts';
import type { Provider, TokenUsage } from '../../src/egress/types.ts';

/**
 * The usage meter on its own: however a body is cut into chunks it counts the
 * same, and whatever garbage it is fed it neither throws nor grows unbounded.
 */

/** The body fed in pieces of `size` bytes (1: byte by byte, splitting every UTF-8 sequence and CRLF). */
function meter(provider: Provider, contentType: string, body: string | Buffer, size = Infinity): TokenUsage {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const counting = usageMeter(provider, contentType);
  for (let at = 0; at < bytes.length; at += Math.min(size, bytes.length)) counting.write(bytes.subarray(at, at + size));
  return counting.usage();
}

const ANTHROPIC_STREAM = [
  'event: message_start',
  'data: {"type":"message_start","message":{"id":"msg","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":1000,"output_tokens":1}}}',
  '',
  ': a comment line',
  'event: ping',
  'data: {"type": "ping"}',
  '',
  'event: content_block_delta',
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo wörld ✓ 🚀"}}',
  '',
  'event: message_delta',
  'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":77}}',
  '',
  'event: message_stop',
  'data: {"type":"message_stop"}',
  '',
  '',
].join('\n');

describe('usageMeter', () => {
  test('counts an SSE stream the same however it is chunked, with LF, CRLF or CR line ends', () => {
    for (const ending of ['\n', '\r\n', '\r']) {
      const body = ANTHROPIC_STREAM.replaceAll('\n', ending);
      for (const size of [1, 2, 3, 7, 64, Infinity]) {
        assert.deepEqual(meter('anthropic', 'text/event-stream', body, size), { inputTokens: 1010, outputTokens: 77 }, `ending ${JSON.stringify(ending)}, chunks of ${size}`);
      }
    }
  });

  test('takes the last event even without the final blank line', () => {
    const body = 'data: {"type":"message_delta","usage":{"output_tokens":3}}';
    assert.deepEqual(meter('anthropic', 'text/event-stream', body), { inputTokens: 0, outputTokens: 3 });
  });

  test('joins multi-line data fields', () => {
    const body = 'data: {"usage":\ndata: {"prompt_tokens": 4, "completion_tokens": 5}}\n\n';
    assert.deepEqual(meter('openai', 'text/event-stream', body), { inputTokens: 4, outputTokens: 5 });
  });

  test('a newer message_delta with cumulative input replaces the start\'s count', () => {
    const body = [
      'data: {"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}',
      'data: {"type":"message_delta","usage":{"input_tokens":12,"cache_creation_input_tokens":3,"output_tokens":9}}',
    ].join('\n\n');
    assert.deepEqual(meter('anthropic', 'text/event-stream', body), { inputTokens: 15, outputTokens: 9 });
  });

  test('JSON bodies of each provider', () => {
    assert.deepEqual(meter('anthropic', 'application/json', '{"content":[{"type":"tool_use","input":{"usage":{"input_tokens":999}}}],"usage":{"input_tokens":5,"output_tokens":6}}'), { inputTokens: 5, outputTokens: 6 });
    assert.deepEqual(meter('openai', 'application/json', '{"usage":{"prompt_tokens":7,"completion_tokens":8}}', 3), { inputTokens: 7, outputTokens: 8 });
    assert.deepEqual(meter('openai', 'application/json', '{"object":"response","usage":{"input_tokens":9,"output_tokens":10}}'), { inputTokens: 9, outputTokens: 10 });
    assert.deepEqual(meter('gemini', 'application/json', '[{"usageMetadata":{"promptTokenCount":1}},{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}]', 5), { inputTokens: 2, outputTokens: 3 });
    // No Content-Type at all: read as JSON.
    assert.deepEqual(meter('gemini', '', '{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}}'), { inputTokens: 4, outputTokens: 1 });
  });

  test('a JSON body past the cap: the usage at its end is still found', () => {
    const filler = JSON.stringify('z'.repeat(5 * 1024 * 1024));
    const body = `{"content":[{"type":"text","text":${filler}}],"note":"\\"usage\\": {\\"input_tokens\\": 1}","usage":{"input_tokens":123,"output_tokens":45}}`;
    assert.deepEqual(meter('anthropic', 'application/json', body, 65536), { inputTokens: 123, outputTokens: 45 });
    const gemini = `[{"candidates":[{"content":{"parts":[{"text":${filler}}]}}]},{"usageMetadata":{"promptTokenCount":6,"candidatesTokenCount":7}}]`;
    assert.deepEqual(meter('gemini', 'application/json', gemini, 65536), { inputTokens: 6, outputTokens: 7 });
  });

  test('hostile or malformed bodies yield no usage and never throw', () => {
    const zero = { inputTokens: 0, outputTokens: 0 };
    const cases: [Provider, string, string | Buffer][] = [
      ['anthropic', 'text/event-stream', 'data: {not json\n\n'],
      ['anthropic', 'text/event-stream', 'data: [1,2,3]\n\ndata: null\n\ndata: "usage"\n\n'],
      ['anthropic', 'text/event-stream', 'data: {"type":"message_start","message":null}\n\n'],
      ['anthropic', 'text/event-stream', 'data: {"usage":{"input_tokens":-5,"output_tokens":1.5}}\n\n'],
      ['anthropic', 'text/event-stream', 'data: {"usage":{"input_tokens":"12","output_tokens":1e400}}\n\n'],
      ['openai', 'text/event-stream', 'data: {"usage":{"prompt_tokens":9007199254740993}}\n\n'],
      ['openai', 'text/event-stream', 'event: x\nid: 1\nretry: 5\n\n\n\n'],
      ['gemini', 'text/event-stream', Buffer.from([0xff, 0xfe, 0x00, 0x0a, 0x0a, 0xc3])],
      ['gemini', 'application/json', '{"usageMetadata":'],
      ['gemini', 'application/json', ''],
      ['openai', 'application/json', '{"usage":{"__proto__":{"prompt_tokens":5}}}'],
    ];
    for (const [provider, type, body] of cases) {
      for (const size of [1, Infinity]) assert.deepEqual(meter(provider, type, body, size), zero, `${provider} ${JSON.stringify(body.toString()).slice(0, 80)}`);
    }
  });

  test('an endless line or an oversized event is skipped, and the stream after it still counts', () => {
    const huge = 'data: ' + 'a'.repeat(3 * 1024 * 1024);
    const body = `${huge}\n\ndata: {"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n`;
    assert.deepEqual(meter('openai', 'text/event-stream', body, 100_000), { inputTokens: 2, outputTokens: 3 });
    const manyLines = Array.from({ length: 2000 }, () => `data: ${'b'.repeat(1000)}`).join('\n');
    const after = `${manyLines}\n\ndata: {"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\n`;
    assert.deepEqual(meter('openai', 'text/event-stream', after, 65536), { inputTokens: 4, outputTokens: 1 });
  });

  test('usage() may be asked more than once', () => {
    const counting = usageMeter('openai', 'text/event-stream');
    counting.write(Buffer.from('data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}'));
    assert.deepEqual(counting.usage(), { inputTokens: 1, outputTokens: 2 });
    assert.deepEqual(counting.usage(), { inputTokens: 1, outputTokens: 2 });
  });
});
