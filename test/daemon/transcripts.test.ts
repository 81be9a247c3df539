import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { tempWorkspace } from '../helpers/brig.ts';
import { Transcripts, type TimelineEntry } from '../../src/daemon/timeline/index.ts';
import { digestExchange } from '../../src/daemon/timeline/llm-digest.ts';
import { forTerminal } from '../../src/cli/client/terminal-text.ts';
import type { TranscriptEntry } from '../../src/egress/index.ts';

/**
 * The recorder on real files: its cap under a flood, its seq across a
 * restart, its retention, ids that could leave its directory; the digest of
 * model exchanges in each wire format; and what reaches a terminal.
 */

const KiB = 1024;

describe('Transcripts', () => {
  test('a flood stops at the cap, once marked; the small entries go on in the reserve, then one last word; the file stays bounded', () => {
    const dir = tempWorkspace('brig-transcripts-');
    const transcripts = new Transcripts(dir.dir, { maxBytes: 64 * KiB, retentionMs: 60_000 }, () => new Set());
    try {
      const flood = transcripts.command('abc', { argv: 'yes', pty: false, via: 'api' });
      flood.started(7);
      for (let index = 0; index < 100; index++) flood.output('stdout', Buffer.alloc(4 * KiB, 'y'));
      flood.ended({ exitCode: 0, status: 'exit status 0' });
      const entries = transcripts.read('abc', { limit: 10_000 });
      assert.equal(entries.filter((entry) => entry.type === 'truncated').length, 1);
      const exit = entries.find((entry) => entry.type === 'exit');
      assert.ok(exit?.type === 'exit');
      const kept = entries.reduce((sum, entry) => sum + (entry.type === 'output' ? entry.text.length : 0), 0);
      assert.equal(kept + (exit.droppedBytes ?? 0), 400 * KiB, 'every byte is either kept or counted');
      // Commands after the cap are still named, until the reserve runs out too.
      for (let index = 0; index < 10_000; index++) transcripts.command('abc', { argv: `cmd ${'x'.repeat(500)}`, pty: false, via: 'api' }).started(100 + index);
      const last = transcripts.read('abc', { limit: 1, tail: 1 })[0];
      assert.ok(last?.type === 'truncated' && last.cmd === null, JSON.stringify(last));
      assert.ok(statSync(join(dir.dir, 'abc.jsonl')).size <= 64 * KiB + 256 * KiB);
    } finally {
      transcripts.close();
      dir.remove();
    }
  });

  test('after a restart the seq goes on from the file; pruning takes only what ended long enough ago; ids that leave the directory are refused', () => {
    const dir = tempWorkspace('brig-transcripts-');
    let running = new Set(['live']);
    const first = new Transcripts(dir.dir, { maxBytes: 64 * KiB, retentionMs: 60_000 }, () => running);
    const recording = first.command('old', { argv: 'true', pty: false, via: 'api' });
    recording.started(1);
    recording.ended({ exitCode: 0, status: 'exit status 0' });
    first.command('live', { argv: 'sleep', pty: false, via: 'api' }).started(2);
    first.close();
    const second = new Transcripts(dir.dir, { maxBytes: 64 * KiB, retentionMs: 60_000 }, () => running);
    try {
      second.input('old', 1, Buffer.from('late'));
      assert.deepEqual(second.read('old', { limit: 10 }).map((entry: TimelineEntry) => entry.seq), [1, 2, 3]);
      const hourAgo = new Date(Date.now() - 3600_000);
      for (const name of ['old', 'live']) utimesSync(join(dir.dir, `${name}.jsonl`), hourAgo, hourAgo);
      second.prune();
      assert.equal(existsSync(join(dir.dir, 'old.jsonl')), false, 'ended an hour ago: gone');
      assert.equal(existsSync(join(dir.dir, 'live.jsonl')), true, 'still running: kept');
      running = new Set();
      assert.equal(second.has('../etc/passwd'), false);
      assert.throws(() => second.read('../x', { limit: 1 }), /not a sandbox id/);
    } finally {
      second.close();
      dir.remove();
    }
  });
});

describe('Transcripts paging', () => {
  test('pages after any seq, the last N and since a time are the same whether the file is being written or read cold', () => {
    const dir = tempWorkspace('brig-transcripts-');
    const writer = new Transcripts(dir.dir, { maxBytes: 64 * 1024 * 1024, retentionMs: 60_000 }, () => new Set());
    const reader = new Transcripts(dir.dir, { maxBytes: 64 * 1024 * 1024, retentionMs: 60_000 }, () => new Set());
    try {
      for (let index = 0; index < 1000; index++) writer.input('abc', 1, Buffer.from(`line ${index} ${'é'.repeat(index % 7)}\n`));
      for (const transcripts of [writer, reader]) {
        const seqs = (query: Parameters<Transcripts['read']>[1]) => transcripts.read('abc', query).map((entry) => entry.seq);
        assert.deepEqual(seqs({ limit: 3 }), [1, 2, 3]);
        for (const after of [0, 255, 256, 257, 511, 512, 997]) assert.deepEqual(seqs({ after, limit: 3 }), [after + 1, after + 2, after + 3], `after ${after}`);
        assert.deepEqual(seqs({ after: 999, limit: 3 }), [1000]);
        assert.deepEqual(seqs({ tail: 3, limit: 10 }), [998, 999, 1000]);
        assert.deepEqual(seqs({ after: 998, tail: 5, limit: 10 }), [999, 1000]);
        const since = transcripts.read('abc', { after: 600, limit: 1 })[0]?.time ?? '';
        assert.ok(seqs({ since, limit: 2000 }).every((seq) => transcripts.read('abc', { after: seq - 1, limit: 1 })[0]?.time.localeCompare(since) !== -1));
        assert.equal(transcripts.read('abc', { after: 700, limit: 1 })[0]?.type, 'input');
      }
    } finally {
      writer.close();
      reader.close();
      dir.remove();
    }
  });
});

describe('Transcripts after a kill -9 mid-write', () => {
  test('an unfinished last line is skipped on reads and ended before the next entry, which starts a line of its own', () => {
    const dir = tempWorkspace('brig-transcripts-');
    const first = new Transcripts(dir.dir, { maxBytes: 64 * KiB, retentionMs: 60_000 }, () => new Set());
    first.input('abc', 1, Buffer.from('whole'));
    first.close();
    appendFileSync(join(dir.dir, 'abc.jsonl'), '{"seq":2,"time":"2026-12-07T00:00:00.000Z","type":"inp');
    const second = new Transcripts(dir.dir, { maxBytes: 64 * KiB, retentionMs: 60_000 }, () => new Set());
    try {
      assert.deepEqual(second.read('abc', { limit: 10 }).map((entry) => entry.seq), [1]);
      second.input('abc', 1, Buffer.from('after'));
      const entries = second.read('abc', { limit: 10 });
      assert.deepEqual(entries.map((entry) => [entry.seq, entry.type === 'input' ? entry.text : '']), [[1, 'whole'], [3, 'after']]);
    } finally {
      second.close();
      dir.remove();
    }
  });
});

describe('digestExchange', () => {
  const exchange = (request: unknown, response: string, path = '/v1/messages'): TranscriptEntry => ({
    time: '', sandbox: 'abc', provider: 'anthropic', method: 'POST', path, status: 200,
    request: JSON.stringify(request), response, truncated: false, usage: { inputTokens: 1, outputTokens: 1 }, headersMs: 1, totalMs: 2,
  });

  test('Anthropic streamed: the tool call with its arguments put together from the deltas; the tool result it answers', () => {
    const events = [
      { type: 'message_start', message: { role: 'assistant', content: [] } },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Writing it.' } },
      { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', name: 'Bash', input: {} } },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"command":' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '"ls -la"}' } },
    ];
    const request = { model: 'claude-x', messages: [{ role: 'user', content: 'hi' }, { role: 'user', content: [{ type: 'tool_result', content: 'total 0' }] }] };
    const digest = digestExchange(exchange(request, events.map((event) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`).join('')));
    assert.deepEqual(digest, { model: 'claude-x', asked: '[tool result] total 0', answered: 'Writing it.\n[tool Bash] {"command":"ls -la"}' });
  });

  test('OpenAI chat whole, Responses streamed, Gemini; what is not JSON is said so', () => {
    const chat = digestExchange(exchange({ model: 'gpt', messages: [{ role: 'user', content: 'go' }] }, JSON.stringify({ choices: [{ message: { content: null, tool_calls: [{ id: 'c', function: { name: 'shell', arguments: '{"cmd":"pwd"}' } }] } }] })));
    assert.deepEqual(chat, { model: 'gpt', asked: 'go', answered: '[tool shell] {"cmd":"pwd"}' });
    const responses = digestExchange(exchange({ model: 'o', input: [{ type: 'function_call_output', output: 'done' }] }, `data: ${JSON.stringify({ type: 'response.completed', response: { output: [{ type: 'message', content: [{ type: 'output_text', text: 'All done.' }] }] } })}\n\n`));
    assert.deepEqual(responses, { model: 'o', asked: '[tool result] done', answered: 'All done.' });
    const gemini = digestExchange(exchange({ contents: [{ role: 'user', parts: [{ text: 'hello' }] }] }, JSON.stringify({ candidates: [{ content: { parts: [{ text: 'Hi.' }] } }] }), '/v1beta/models/gemini-2.5:generateContent'));
    assert.deepEqual(gemini, { model: 'gemini-2.5', asked: 'hello', answered: 'Hi.' });
    assert.equal(digestExchange({ ...exchange({}, 'not json'), request: '\u0000binary' }).asked, '[a request that is not JSON]');
  });
});

describe('forTerminal', () => {
  test('colours pass; titles, clipboard writes, cursor moves and bare control characters do not; a pipe gets the text as it came', () => {
    const hostile = 'a\x1b]0;title\x07b\x1b]52;c;ZXZpbA==\x1b\\c\x1b[2Jd\x1b[31mred\x1b[0m\re\x07\n';
    assert.equal(forTerminal(hostile, true), 'abcd\x1b[31mred\x1b[0m\\x0de\\x07\n');
    assert.equal(forTerminal(hostile, false), hostile);
  });
});
