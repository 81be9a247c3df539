import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { BrigError } from '../../protocol/index.ts';
import type { Provider } from '../types.ts';
import { PROVIDER_SPECS, PROVIDERS } from './providers.ts';

/**
 * Where the gateway's keys and upstreams come from: the host's environment,
 * then a key file of `NAME=value` lines with the same names (brig's state
 * directory has its place). The environment wins, so a one-off
 * `OPENAI_API_KEY=… brig run` overrides the file. Nothing here ever comes
 * from a sandbox.
 */

export interface GatewayConfig {
  /** The host's key per provider; a provider without one is answered 401. */
  keys: Partial<Record<Provider, string>>;
  /** Base URL per provider; its path, if any, is kept in front of the request's. */
  upstreams: Record<Provider, string>;
  /** How long an upstream may take to send its response headers (a model can think for minutes). */
  headerTimeoutMs: number;
}

export const DEFAULT_HEADER_TIMEOUT_MS = 600_000;

type Environment = Record<string, string | undefined>;

export function loadGatewayConfig(env: Environment = process.env, keyFile?: string): GatewayConfig {
  const fromFile = keyFile === undefined ? {} : readKeyFile(keyFile);
  const keys: Partial<Record<Provider, string>> = {};
  const upstreams = {} as Record<Provider, string>;
  for (const provider of PROVIDERS) {
    const spec = PROVIDER_SPECS[provider];
    const key = firstSet(spec.keyVariables, env) ?? firstSet(spec.keyVariables, fromFile);
    if (key !== undefined) keys[provider] = key;
    upstreams[provider] = upstreamFrom(env[spec.upstreamVariable], spec.upstreamVariable) ?? spec.defaultUpstream;
  }
  return { keys, upstreams, headerTimeoutMs: DEFAULT_HEADER_TIMEOUT_MS };
}

/** Each name in turn, in one source: GEMINI_API_KEY before GOOGLE_API_KEY. */
function firstSet(names: readonly string[], source: Environment): string | undefined {
  for (const name of names) {
    const value = source[name]?.trim();
    if (value) return value;
  }
  return undefined;
}

function upstreamFrom(value: string | undefined, variable: string): string | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  const url = URL.canParse(text) ? new URL(text) : null;
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username || url.password) {
    throw new BrigError(
      'BRIG_USAGE',
      `${variable}=${JSON.stringify(text)} is not an http(s) base URL`,
      `Set it to one such as https://api.example.com or http://127.0.0.1:8080/proxy (no query, no credentials), or unset it to use the provider's own.`,
    );
  }
  // The SDKs' habit is a base with its version (https://api.openai.com/v1); the gateway's paths bring their
  // own (/v1/chat/completions), so a trailing version is dropped rather than doubled into /v1/v1/.
  return url.origin + url.pathname.replace(/\/+$/, '').replace(/\/v1(?:beta\d*|alpha\d*)?$/, '');
}

const KEY_FILE_HINT = 'Keep one NAME=value line per key (ANTHROPIC_API_KEY=…, OPENAI_API_KEY=…, GEMINI_API_KEY=…) in a file of your own, and chmod 600 it.';

/**
 * A key file is a secret at rest: it must be the caller's own and closed to
 * everyone else, as ssh insists for a private key. It is opened once and
 * checked through that descriptor, so the file read is the file checked.
 * A file that does not exist is no file: the keys come from the environment.
 */
export function readKeyFile(path: string): Environment {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    throw new BrigError('BRIG_LLM_KEYS', `cannot read the LLM key file ${path} (${code ?? String(error)})`, KEY_FILE_HINT);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new BrigError('BRIG_LLM_KEYS', `the LLM key file ${path} is not a regular file`, KEY_FILE_HINT);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      throw new BrigError(
        'BRIG_LLM_KEYS',
        `the LLM key file ${path} belongs to uid ${stat.uid}, not to you (uid ${uid}): another user could have written the keys brig would send`,
        `Take it over (chown ${uid} ${path}) or use a key file of your own, and chmod 600 it.`,
      );
    }
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(3, '0');
      throw new BrigError('BRIG_LLM_KEYS', `the LLM key file ${path} is open to other users (mode ${mode})`, `Run: chmod 600 ${path}`);
    }
    return parseKeyFile(readFileSync(fd, 'utf8'), path);
  } finally {
    closeSync(fd);
  }
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `NAME=value` lines; blank lines, `# comments` and an `export ` prefix are
 * allowed, quotes around a value dropped. Any other line is an error that
 * names its number, never its text: a key pasted alone on a line is a secret.
 */
export function parseKeyFile(text: string, path = 'the key file'): Environment {
  const values: Environment = {};
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line.length === 0 || line.startsWith('#')) continue;
    const equals = line.indexOf('=');
    const name = equals === -1 ? '' : line.slice(0, equals).trim();
    if (!NAME.test(name)) throw new BrigError('BRIG_LLM_KEYS', `${path}, line ${index + 1}: not a NAME=value line`, KEY_FILE_HINT);
    let value = line.slice(equals + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1);
    values[name] = value;
  }
  return values;
}
