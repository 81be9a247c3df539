import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { PROVIDER_SPECS } from '../../src/egress/gateway/providers.ts';

/**
 * Issue 10, item 13: the LLM gateway forwarded any provider path with the
 * host's real key (batches, files, organization endpoints), so a jailed
 * command could spend past its budget or reach the account itself. From a
 * real jail, through the real proxy and gateway of `brig run --llm`, every
 * such path is refused 403 in the provider's own error shape, recorded as a
 * violation, and never reaches upstream; the model endpoints still work.
 */

const KEYS = { ANTHROPIC_API_KEY: 'sk-ant-real-0123', OPENAI_API_KEY: 'sk-real-0123', GEMINI_API_KEY: 'AIza-real-0123' };

describe('the LLM gateway forwards only model endpoints', () => {
  const workspace = tempWorkspace('brig-allowlist-');
  const state = tempWorkspace('brig-allowlist-state-');
  const seen: string[] = [];
  let upstream: Server;
  let base = '';

  before(async () => {
    upstream = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"usage":{"input_tokens":1,"output_tokens":1}}');
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  after(() => {
    upstream.close();
    workspace.remove();
    state.remove();
  });

  /** Each call from inside the jail: "<status> <body>" per line. The providers' upstream is the stand-in, given with its /v1 as SDKs write it. */
  const callFromJail = async (calls: string[], upstreams: Record<string, string> = {}) => {
    const script = calls.map((call) => `curl -sS --path-as-is -w ' %{http_code}\\n' ${call}`).join('; ');
    const env = { ...process.env, ...KEYS, BRIG_STATE_DIR: state.dir, BRIG_ANTHROPIC_URL: base, BRIG_OPENAI_URL: `${base}/v1`, BRIG_GEMINI_URL: base, ...upstreams };
    const result = await runBrig(['run', '--workspace', workspace.dir, '--llm', 'anthropic', '--llm', 'openai', '--llm', 'gemini', '--', 'sh', '-c', script], { cwd: workspace.dir, env });
    assert.equal(result.code, 0, result.stderr);
    const answers = result.stdout.trim().split('\n').map((line) => {
      const at = line.lastIndexOf(' ');
      return { body: line.slice(0, at), status: Number(line.slice(at + 1)) };
    });
    return { answers, stderr: result.stderr };
  };

  test('batches, files, admin and organization endpoints are refused 403 in each provider\'s shape, and never reach upstream', async () => {
    const refused: Array<[string, string]> = [
      ['anthropic', '-X POST "$ANTHROPIC_BASE_URL/v1/messages/batches" -d "{}"'],
      ['anthropic', '"$ANTHROPIC_BASE_URL/v1/files"'],
      ['anthropic', '"$ANTHROPIC_BASE_URL/v1/organizations/users"'],
      ['anthropic', '-X POST "$ANTHROPIC_BASE_URL/v1/messages/../files" -d "{}"'],
      ['anthropic', '-X POST "$ANTHROPIC_BASE_URL/v1/messages/%2e%2e/files" -d "{}"'],
      ['anthropic', '-X POST "$ANTHROPIC_BASE_URL/v1/messages%2Fbatches" -d "{}"'],
      ['anthropic', '-X DELETE "$ANTHROPIC_BASE_URL/v1/messages"'],
      ['openai', '-X POST "$OPENAI_BASE_URL/batches" -d "{}"'],
      ['openai', '-X POST "$OPENAI_BASE_URL/files" -d "{}"'],
      ['openai', '-X POST "$OPENAI_BASE_URL/fine_tuning/jobs" -d "{}"'],
      ['openai', '"$OPENAI_BASE_URL/organization/costs"'],
      ['openai', '"$OPENAI_BASE_URL/responses/resp_123"'],
      ['gemini', '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/models/gemini-2.5-pro:batchGenerateContent" -d "{}"'],
      ['gemini', '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/files" -d "{}"'],
      ['gemini', '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/cachedContents" -d "{}"'],
      ['gemini', '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/tunedModels/x:generateContent" -d "{}"'],
    ];
    const before = seen.length;
    const { answers, stderr } = await callFromJail(refused.map(([, call]) => call));
    for (const [index, [provider, call]] of refused.entries()) {
      const answer = answers[index];
      assert.equal(answer?.status, 403, `${call}: ${answer?.body}`);
      const body = JSON.parse(answer.body) as Record<string, Record<string, unknown> | string>;
      if (provider === 'anthropic') assert.deepEqual([body.type, (body.error as Record<string, unknown>).type], ['error', 'permission_error'], call);
      if (provider === 'openai') assert.equal((body.error as Record<string, unknown>).code, 'endpoint_not_allowed', call);
      if (provider === 'gemini') assert.equal((body.error as Record<string, unknown>).status, 'PERMISSION_DENIED', call);
      assert.match(String((body.error as Record<string, unknown>).message), /forwards only .*'s model endpoints/);
    }
    assert.deepEqual(seen.slice(before), [], 'upstream saw none of them');
    assert.match(stderr, /brig: 16 accesses refused:\n {2}llm \/anthropic\/v1\/messages\/batches — endpoint not allowed\n/);
  });

  test('the model endpoints reach upstream, with a base URL given with or without its /v1', async () => {
    const calls = [
      '-X POST "$ANTHROPIC_BASE_URL/v1/messages" -d "{}"',
      '-X POST "$ANTHROPIC_BASE_URL/v1/messages/count_tokens" -d "{}"',
      '"$ANTHROPIC_BASE_URL/v1/models"',
      '-X POST "$OPENAI_BASE_URL/chat/completions" -d "{}"',
      '-X POST "$OPENAI_BASE_URL/responses" -d "{}"',
      '-X POST "$OPENAI_BASE_URL/embeddings" -d "{}"',
      '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse" -d "{}"',
      '-X POST "$GOOGLE_GEMINI_BASE_URL/v1beta/models/gemini-2.5-pro%3AgenerateContent" -d "{}"',
      '-X POST "$GOOGLE_GEMINI_BASE_URL/v1/models/gemini-2.5-pro:countTokens" -d "{}"',
    ];
    const before = seen.length;
    const { answers } = await callFromJail(calls, { BRIG_ANTHROPIC_URL: `${base}/v1` });
    assert.deepEqual(answers.map((answer) => answer.status), calls.map(() => 200));
    assert.deepEqual(seen.slice(before), [
      'POST /v1/messages',
      'POST /v1/messages/count_tokens',
      'GET /v1/models',
      'POST /v1/chat/completions',
      'POST /v1/responses',
      'POST /v1/embeddings',
      'POST /v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse',
      'POST /v1beta/models/gemini-2.5-pro%3AgenerateContent',
      'POST /v1/models/gemini-2.5-pro:countTokens',
    ]);
  });

  test('docs/egress.md lists every endpoint the gateway forwards', () => {
    const doc = readFileSync(new URL('../../docs/egress.md', import.meta.url), 'utf8');
    for (const spec of Object.values(PROVIDER_SPECS)) {
      for (const endpoint of spec.endpoints) assert.ok(doc.includes(`| ${spec.provider} | ${endpoint.method} | \`${endpoint.shown}\` |`), `${spec.provider} ${endpoint.method} ${endpoint.shown}`);
    }
  });

  test('the run summary says so when every request failed (502), and why', async () => {
    const closed = 'http://127.0.0.1:1';
    const { answers, stderr } = await callFromJail(['-X POST "$ANTHROPIC_BASE_URL/v1/messages" -d "{}"', '-X POST "$ANTHROPIC_BASE_URL/v1/messages" -d "{}"'], { BRIG_ANTHROPIC_URL: closed });
    assert.deepEqual(answers.map((answer) => answer.status), [502, 502]);
    assert.match(stderr, /brig: LLM gateway: every request failed \(2× HTTP 502\); the first: brig's gateway could not reach Anthropic at http:\/\/127\.0\.0\.1:1: ECONNREFUSED\./);
  });
});
