import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { BrigError } from '../protocol/index.ts';
import { anchorRelativePaths } from './resolve.ts';
import type { PolicyInput } from './types.ts';
import { POLICY_HINT, validatePolicyInput } from './validate.ts';

/**
 * Reading a policy file: the extension decides the format (.json, .yaml, .yml;
 * nothing is guessed, so a file never means two things), then the content is
 * validated and its relative paths (".", "./x", "../x") are made absolute
 * against the file's own directory, so a policy means the same wherever brig
 * is started. "~" paths are left for resolvePolicy.
 */
export async function loadPolicyFile(path: string): Promise<PolicyInput> {
  const content = await readConfigFile(path, 'policy');
  return anchorRelativePaths(validatePolicyInput(content, path), dirname(resolve(path)));
}

/**
 * A JSON or YAML file's content, parsed (a policy file, an agents file): the
 * extension decides the format; unreadable or malformed files are
 * BRIG_POLICY_FILE errors naming the line and column.
 */
export async function readConfigFile(path: string, what: string): Promise<unknown> {
  const format = FORMATS[extname(path).toLowerCase()];
  if (!format) {
    throw new BrigError('BRIG_POLICY_FILE', `${path}: unknown ${what} file type "${extname(path)}"`, 'Name the file .json, .yaml or .yml after its format.');
  }
  const text = await readRegularFile(path);
  return format === 'json' ? parseJson(text, path) : await parseYaml(text, path);
}

/** Larger than any policy or agents file a person writes; a bigger one is something else. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * A config file's text. Opened non-blocking, so a FIFO or a device cannot hold
 * brig at the open; then only a regular file is read (no FIFO, socket, device
 * or directory), and at most MAX_CONFIG_BYTES of it. A symlink is followed, as
 * any tool does: brig reads with the caller's own rights.
 */
async function readRegularFile(path: string): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    throw unreadable(path, error);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new BrigError('BRIG_POLICY_FILE', `${path}: not a regular file (${fileKind(stats)})`, 'Give the path of a .json or .yaml file; brig does not read pipes, sockets, devices or directories.');
    }
    if (stats.size > MAX_CONFIG_BYTES) throw tooLarge(path);
    // Unfilled: only the bytes read are ever looked at.
    const buffer = Buffer.allocUnsafe(MAX_CONFIG_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      // The file grew after the stat.
      if (length > MAX_CONFIG_BYTES) throw tooLarge(path);
    }
    return buffer.toString('utf8', 0, length);
  } catch (error) {
    if (error instanceof BrigError) throw error;
    throw unreadable(path, error);
  } finally {
    await handle.close();
  }
}

function unreadable(path: string, error: unknown): BrigError {
  const reason = error instanceof Error ? error.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '') : String(error);
  return new BrigError('BRIG_POLICY_FILE', `${path}: cannot read the file (${reason})`, 'Check the path and that you may read it.');
}

function tooLarge(path: string): BrigError {
  return new BrigError('BRIG_POLICY_FILE', `${path}: larger than ${MAX_CONFIG_BYTES} bytes`, 'A policy or agents file is a few kilobytes; check that the path names the file you meant.');
}

function fileKind(stats: Stats): string {
  if (stats.isFIFO()) return 'a named pipe';
  if (stats.isSocket()) return 'a socket';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a file';
}

const FORMATS: Record<string, 'json' | 'yaml'> = { '.json': 'json', '.yaml': 'yaml', '.yml': 'yaml' };

function parseJson(text: string, path: string): unknown {
  // Editors on Windows save a byte-order mark that JSON.parse refuses.
  const body = text.replace(/^\uFEFF/, '');
  try {
    return JSON.parse(body);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const reason = jsonReason(message);
    const position = /at position (\d+)/.exec(message)?.[1];
    throw syntaxError(path, body, position === undefined ? jsonErrorOffset(body) : Number(position), reason);
  }
}

/**
 * V8's complaint in brig's own words. Its messages quote the input ("Unexpected
 * token 'X', "Xsecret" is not valid JSON"), and the file may be one the reader
 * should not see through brig (a symlink to another's file in a daemon's
 * request): no byte of the content is ever repeated, only where it broke.
 */
function jsonReason(message: string): string {
  if (/Unexpected end of JSON input|Unterminated string/.test(message)) return 'Unexpected end of input';
  if (/Unexpected non-whitespace character after JSON/.test(message)) return 'Unexpected text after the JSON value';
  if (/Bad control character/.test(message)) return 'Bad control character in string literal';
  if (/Bad (?:Unicode )?escape/.test(message)) return 'Bad escaped character in string literal';
  if (/Expected property name|Expected double-quoted property name/.test(message)) return 'Expected a double-quoted property name';
  if (/Expected ',' or '}'/.test(message)) return "Expected ',' or '}' after a property value";
  if (/Expected ',' or ']'/.test(message)) return "Expected ',' or ']' after an array element";
  if (/Expected ':'/.test(message)) return "Expected ':' after a property name";
  return 'Unexpected character';
}

const JSON_LITERAL = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const JSON_ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y;

/**
 * Where JSON.parse gave up, when V8 does not say (it names a position for some
 * errors only): once parsing has failed, never on the happy path, this small
 * scanner walks the grammar to the first character that breaks it.
 */
function jsonErrorOffset(text: string): number {
  let at = 0;
  const fail = (): never => {
    throw at;
  };
  const space = () => {
    while (at < text.length && ' \t\n\r'.includes(text.charAt(at))) at += 1;
  };
  const expect = (pattern: RegExp) => {
    pattern.lastIndex = at;
    if (!pattern.test(text)) fail();
    at = pattern.lastIndex;
  };
  const string = () => {
    at += 1;
    for (;;) {
      const char = text.charAt(at);
      if (char === '"') return void (at += 1);
      if (char === '\\') expect(JSON_ESCAPE);
      else if (char === '' || char < ' ') fail();
      else at += 1;
    }
  };
  const members = (close: string, member: () => void) => {
    at += 1;
    space();
    if (text.charAt(at) === close) return void (at += 1);
    for (;;) {
      member();
      space();
      const char = text.charAt(at);
      if (char === close) return void (at += 1);
      if (char !== ',') fail();
      at += 1;
    }
  };
  const value = (): void => {
    space();
    const char = text.charAt(at);
    if (char === '{') {
      members('}', () => {
        space();
        if (text.charAt(at) !== '"') fail();
        string();
        space();
        if (text.charAt(at) !== ':') fail();
        at += 1;
        value();
      });
    } else if (char === '[') members(']', value);
    else if (char === '"') string();
    else expect(JSON_LITERAL);
  };
  try {
    value();
    space();
    return at < text.length ? at : text.length;
  } catch (offset) {
    // A number is where the grammar broke; anything else (a stack overflow on absurd nesting) has no place.
    return typeof offset === 'number' ? offset : text.length;
  }
}

async function parseYaml(text: string, path: string): Promise<unknown> {
  // Loaded here, not at the top: people who write JSON never pay for the YAML parser.
  const { parseDocument } = await import('yaml');
  // YAML 1.2 core schema: "no" and "on" stay strings; duplicate keys and several documents are errors.
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  // Warnings (an unknown !tag) are refused too: a value whose meaning the parser guessed is not a policy.
  const first = document.errors[0] ?? document.warnings[0];
  // Only the error's code is named: yaml's messages quote the input (tags, anchors, keys).
  if (first) throw syntaxError(path, text, first.pos[0], yamlReason(first.code));
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias to a missing anchor, or an alias bomb; the message would name the anchor.
    const reason = error instanceof Error && /Excessive alias count/.test(error.message) ? 'too many aliases' : 'an alias names no anchor';
    throw new BrigError('BRIG_POLICY_FILE', `${path}: ${reason}`, 'Fix the YAML anchors and aliases (&name, *name).');
  }
}

function syntaxError(path: string, text: string, offset: number, reason: string): BrigError {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return new BrigError('BRIG_POLICY_FILE', `${path}:${line}:${column}: ${reason}`, `Fix the syntax at line ${line}, column ${column}. ${POLICY_HINT}`);
}

/** The common YAML mistakes in a sentence; the rest as their code's words ("Bad indent"). */
const YAML_REASONS: Record<string, string> = {
  DUPLICATE_KEY: 'Map keys must be unique',
  MULTIPLE_DOCS: 'Source contains multiple documents',
  TAG_RESOLVE_FAILED: 'Unresolved tag',
  TAB_AS_INDENT: 'Tabs are not allowed as indentation',
};

function yamlReason(code: string): string {
  const words = code.toLowerCase().replace(/_/g, ' ');
  return YAML_REASONS[code] ?? words.charAt(0).toUpperCase() + words.slice(1);
}
