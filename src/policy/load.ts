import { readFile } from 'node:fs/promises';
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
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '') : String(error);
    throw new BrigError('BRIG_POLICY_FILE', `${path}: cannot read the file (${reason})`, 'Check the path and that you may read it.');
  }
  return format === 'json' ? parseJson(text, path) : await parseYaml(text, path);
}

const FORMATS: Record<string, 'json' | 'yaml'> = { '.json': 'json', '.yaml': 'yaml', '.yml': 'yaml' };

function parseJson(text: string, path: string): unknown {
  // Editors on Windows save a byte-order mark that JSON.parse refuses.
  const body = text.replace(/^\uFEFF/, '');
  try {
    return JSON.parse(body);
  } catch (error) {
    // V8's wording is kept, without the position or the echo of the input it sometimes adds.
    const message = error instanceof Error ? error.message : String(error);
    const reason = message
      .replace(/ at position \d+.*$/s, '')
      .replace(/ in JSON$/, '')
      .replace(/, (?:\.\.\.)?".*$/s, '')
      .replace(/ of JSON input$/, ' of input');
    const position = /at position (\d+)/.exec(message)?.[1];
    throw syntaxError(path, body, position === undefined ? jsonErrorOffset(body) : Number(position), reason);
  }
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
  if (first) throw syntaxError(path, text, first.pos[0], first.message);
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias to a missing anchor, or an alias bomb.
    throw new BrigError('BRIG_POLICY_FILE', `${path}: ${error instanceof Error ? error.message : String(error)}`, 'Fix the YAML anchors and aliases (&name, *name).');
  }
}

function syntaxError(path: string, text: string, offset: number, reason: string): BrigError {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return new BrigError('BRIG_POLICY_FILE', `${path}:${line}:${column}: ${reason}`, `Fix the syntax at line ${line}, column ${column}. ${POLICY_HINT}`);
}
