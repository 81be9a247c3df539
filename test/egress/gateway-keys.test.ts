import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isBrigError, type BrigError, type ErrorCode } from '../../src/protocol/index.ts';
import { DEFAULT_HEADER_TIMEOUT_MS, gatewayEnvironment, loadGatewayConfig, parseKeyFile, PLACEHOLDER_KEY, providerRoute, upstreamUrl } from '../../src/egress/gateway/index.ts';

/** Where the host's keys and upstreams come from, and what a sandbox is told instead. */

let dir: string;

/** The BrigError `run` throws, checked for its code. */
function brigError(run: () => unknown, code: ErrorCode = 'BRIG_LLM_KEYS'): BrigError {
  try {
    run();
  } catch (error) {
    assert.ok(isBrigError(error), `not a BrigError: ${String(error)}`);
    assert.equal(error.code, code);
    return error;
  }
  assert.fail('it did not throw');
}

function keyFile(name: string, text: string, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'brig-gateway-keys-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('loadGatewayConfig', () => {
  test('keys from the environment, GOOGLE_API_KEY standing in for GEMINI_API_KEY', () => {
    const config = loadGatewayConfig({ ANTHROPIC_API_KEY: 'a-key', GOOGLE_API_KEY: 'g-key', OPENAI_API_KEY: '  ' });
    assert.deepEqual(config.keys, { anthropic: 'a-key', gemini: 'g-key' });
    assert.deepEqual(config.upstreams, { anthropic: 'https://api.anthropic.com', openai: 'https://api.openai.com', gemini: 'https://generativelanguage.googleapis.com' });
    assert.equal(config.headerTimeoutMs, DEFAULT_HEADER_TIMEOUT_MS);
    assert.equal(loadGatewayConfig({ GEMINI_API_KEY: 'gemini', GOOGLE_API_KEY: 'google' }).keys.gemini, 'gemini');
  });

  test('keys from a key file; the environment wins over it', () => {
    const path = keyFile('keys', '# brig keys\nexport ANTHROPIC_API_KEY="file-anthropic"\nOPENAI_API_KEY=file-openai\n\nGEMINI_API_KEY=\'file-gemini\'\nUNRELATED=1\n');
    assert.deepEqual(loadGatewayConfig({}, path).keys, { anthropic: 'file-anthropic', openai: 'file-openai', gemini: 'file-gemini' });
    assert.deepEqual(loadGatewayConfig({ OPENAI_API_KEY: 'env-openai' }, path).keys, { anthropic: 'file-anthropic', openai: 'env-openai', gemini: 'file-gemini' });
  });

  test('a key file others can read is refused, saying how to fix it', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      const path = keyFile(`open-${mode.toString(8)}`, 'OPENAI_API_KEY=secret\n', mode);
      const error = brigError(() => loadGatewayConfig({}, path));
      assert.equal(error.message, `the LLM key file ${path} is open to other users (mode ${mode.toString(8)})`);
      assert.equal(error.hint, `Run: chmod 600 ${path}`);
    }
    assert.equal(loadGatewayConfig({}, keyFile('closed', 'OPENAI_API_KEY=secret\n', 0o400)).keys.openai, 'secret');
  });

  test('a key file that is not the caller\'s own is refused', { skip: process.getuid?.() !== 0 && 'changing a file\'s owner needs root' }, () => {
    const path = keyFile('foreign', 'OPENAI_API_KEY=secret\n');
    chownSync(path, 65534, 65534);
    assert.match(brigError(() => loadGatewayConfig({}, path)).message, /belongs to uid 65534, not to you \(uid 0\)/);
  });

  test('no key file is no keys from it; a directory in its place is an error', () => {
    assert.deepEqual(loadGatewayConfig({ OPENAI_API_KEY: 'env' }, join(dir, 'absent')).keys, { openai: 'env' });
    assert.match(brigError(() => loadGatewayConfig({}, dir)).message, /not a regular file/);
  });

  test('a line that is not NAME=value is refused by its number, never its text', () => {
    const path = keyFile('pasted', '# keys\nOPENAI_API_KEY=fine\nsk-ant-pasted-alone\n');
    const error = brigError(() => loadGatewayConfig({}, path));
    assert.equal(error.message, `${path}, line 3: not a NAME=value line`);
    assert.ok(!error.format().includes('sk-ant-pasted-alone'));
  });

  test('upstreams move with BRIG_*_URL, and a URL that is not one is refused', () => {
    const config = loadGatewayConfig({ BRIG_ANTHROPIC_URL: 'http://127.0.0.1:9999/proxy', BRIG_OPENAI_URL: 'https://gateway.example.com/openai/', BRIG_GEMINI_URL: '' });
    assert.equal(config.upstreams.anthropic, 'http://127.0.0.1:9999/proxy');
    assert.equal(config.upstreams.openai, 'https://gateway.example.com/openai');
    assert.equal(config.upstreams.gemini, 'https://generativelanguage.googleapis.com');
    // A base with its version, as the SDKs write it, means the same as one without: never /v1/v1/.
    const versioned = loadGatewayConfig({ BRIG_ANTHROPIC_URL: 'https://api.anthropic.com/v1', BRIG_OPENAI_URL: 'http://127.0.0.1:8080/openai/v1/', BRIG_GEMINI_URL: 'https://generativelanguage.googleapis.com/v1beta' });
    assert.deepEqual(versioned.upstreams, { anthropic: 'https://api.anthropic.com', openai: 'http://127.0.0.1:8080/openai', gemini: 'https://generativelanguage.googleapis.com' });
    for (const bad of ['api.openai.com', 'ftp://example.com', 'https://user:pw@example.com', 'https://example.com/?key=1']) {
      assert.match(brigError(() => loadGatewayConfig({ BRIG_OPENAI_URL: bad }), 'BRIG_USAGE').message, /BRIG_OPENAI_URL=.* is not an http\(s\) base URL/);
    }
  });

  test('parseKeyFile takes CRLF files and values with = in them', () => {
    assert.deepEqual(parseKeyFile('A=1\r\nB = x=y \r\nC=\n'), { A: '1', B: 'x=y', C: '' });
    assert.match(brigError(() => parseKeyFile('=nameless')).message, /line 1: not a NAME=value line/);
  });
});

describe('providerRoute and upstreamUrl', () => {
  test('route by prefix, and nothing else', () => {
    assert.deepEqual(providerRoute('/openai/v1/chat/completions'), { provider: 'openai', path: '/v1/chat/completions' });
    assert.deepEqual(providerRoute('http://127.0.0.1:3128/openai/v1/models?limit=2'), { provider: 'openai', path: '/v1/models?limit=2' });
    assert.deepEqual(providerRoute('/anthropic/v1/messages/count_tokens'), { provider: 'anthropic', path: '/v1/messages/count_tokens' });
    assert.deepEqual(providerRoute('/anthropic/models'), { provider: 'anthropic', path: '/v1/models' });
    assert.deepEqual(providerRoute('/anthropic/api/hello'), { provider: 'anthropic', path: '/api/hello' });
    assert.deepEqual(providerRoute('/gemini/v1beta/models/x:generateContent?key=k&alt=sse'), { provider: 'gemini', path: '/v1beta/models/x:generateContent?alt=sse' });
    assert.deepEqual(providerRoute('/gemini/v1beta/models?pageSize=5'), { provider: 'gemini', path: '/v1beta/models?pageSize=5' });
    assert.equal(providerRoute('/openaix/v1'), null);
    assert.equal(providerRoute('/v1/messages'), null);
    // Dot segments are resolved before routing, never sent on.
    assert.deepEqual(providerRoute('/gemini/../openai/v1/models'), { provider: 'openai', path: '/v1/models' });
  });

  test('the path goes after the upstream base URL\'s own', () => {
    assert.equal(upstreamUrl('http://127.0.0.1:9999/proxy', '/v1/messages?beta=true').href, 'http://127.0.0.1:9999/proxy/v1/messages?beta=true');
    assert.equal(upstreamUrl('https://api.openai.com/', '/v1/models').href, 'https://api.openai.com/v1/models');
    assert.equal(upstreamUrl('https://api.openai.com', '/v1/models').href, 'https://api.openai.com/v1/models');
  });
});

describe('gatewayEnvironment', () => {
  test('points each agent at the gateway, with a placeholder for each key', () => {
    const env = gatewayEnvironment('http://127.0.0.1:3128/', ['anthropic', 'openai', 'gemini']);
    assert.equal(env.ANTHROPIC_BASE_URL, 'http://127.0.0.1:3128/anthropic');
    assert.equal(env.ANTHROPIC_API_KEY, PLACEHOLDER_KEY);
    assert.equal(env.OPENAI_BASE_URL, 'http://127.0.0.1:3128/openai/v1');
    assert.equal(env.OPENAI_API_KEY, PLACEHOLDER_KEY);
    assert.equal(env.GOOGLE_GEMINI_BASE_URL, 'http://127.0.0.1:3128/gemini');
    assert.equal(env.GEMINI_API_KEY, PLACEHOLDER_KEY);
    assert.equal(env.GOOGLE_GENERATIVE_AI_API_KEY, PLACEHOLDER_KEY);
    assert.equal(env.ANTHROPIC_API_ENDPOINT, 'http://127.0.0.1:3128/anthropic');
    assert.equal(env.OPENAI_API_ENDPOINT, 'http://127.0.0.1:3128/openai/v1');
    assert.equal(env.GEMINI_API_ENDPOINT, 'http://127.0.0.1:3128/gemini');
    assert.deepEqual(JSON.parse(env.OPENCODE_CONFIG_CONTENT ?? ''), {
      provider: {
        anthropic: { options: { baseURL: 'http://127.0.0.1:3128/anthropic/v1' } },
        openai: { options: { baseURL: 'http://127.0.0.1:3128/openai/v1' } },
        google: { options: { baseURL: 'http://127.0.0.1:3128/gemini/v1beta' } },
      },
    });
    // Every URL it hands out routes back to the provider it names.
    assert.equal(providerRoute(new URL(`${env.OPENAI_BASE_URL}/responses`).pathname)?.provider, 'openai');
    assert.deepEqual(providerRoute(new URL(`${env.ANTHROPIC_BASE_URL}/v1/messages`).pathname), { provider: 'anthropic', path: '/v1/messages' });
  });

  test('only the providers the sandbox may use', () => {
    const env = gatewayEnvironment('http://127.0.0.1:3128', ['openai']);
    assert.deepEqual(Object.keys(env).sort(), ['OPENAI_API_BASE', 'OPENAI_API_ENDPOINT', 'OPENAI_API_KEY', 'OPENAI_BASE_URL', 'OPENCODE_CONFIG_CONTENT']);
    assert.deepEqual(gatewayEnvironment('http://127.0.0.1:3128', []), {});
  });
});
