/**
 * parseDockerfile: the subset of the Dockerfile format brig builds
 * (docs/images.md, "Building from a Dockerfile"). It reads lines, joins
 * continuations, drops comments and parser directives, and turns each
 * instruction into data; variables are substituted later, by the builder,
 * because their values depend on the base image and on --build-arg.
 * Instructions that mean nothing without a container runtime (EXPOSE,
 * VOLUME, HEALTHCHECK, …) are ignored with a warning; those brig cannot honour
 * (multi-stage builds, ADD of a URL, heredocs) are refused with
 * BRIG_DOCKERFILE_INVALID, the line number and a hint.
 */
import { BrigError } from '../protocol/index.ts';
import { splitWords, WordError } from './dockerfile-words.ts';

/** Shell form (run by the SHELL, default /bin/sh -c) or exec form (JSON array). */
export type CommandForm = { shell: string } | { exec: string[] };

/** A name and a raw value: substitution and quote removal happen at build time. */
export interface Pair {
  key: string;
  value: string;
}

export type Instruction = { line: number; text: string } & (
  | { kind: 'FROM'; image: string; stage?: string }
  | { kind: 'ARG'; args: Array<{ name: string; value?: string }> }
  | { kind: 'ENV' | 'LABEL'; pairs: Pair[] }
  | { kind: 'RUN'; command: CommandForm; network?: 'default' | 'none' | 'host' }
  | { kind: 'CMD' | 'ENTRYPOINT'; command: CommandForm }
  | { kind: 'COPY' | 'ADD'; sources: string[]; dest: string; chown?: string; chmod?: number }
  | { kind: 'WORKDIR' | 'USER'; value: string }
  | { kind: 'SHELL'; shell: string[] }
);

export interface Warning {
  line: number;
  message: string;
}

export interface Dockerfile {
  /** ARGs before FROM: they may be used in FROM only (and redeclared after it). */
  globalArgs: Array<{ name: string; value?: string }>;
  /** Everything from FROM on; the first is always FROM. */
  instructions: Instruction[];
  warnings: Warning[];
}

const HINT = 'brig builds one stage: FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, LABEL, CMD, ENTRYPOINT, SHELL (docs/images.md, "Building from a Dockerfile")';

export function invalidAt(line: number, message: string, hint = HINT): BrigError {
  return new BrigError('BRIG_DOCKERFILE_INVALID', `Dockerfile line ${line}: ${message}`, hint);
}

/** Instructions with no effect on a root filesystem; ignored, and the warning says why. */
const IGNORED: Record<string, string> = {
  EXPOSE: 'a sandbox\'s ports are reached through brig, not published',
  VOLUME: 'a sandbox\'s writes are its own already; policy binds host paths',
  HEALTHCHECK: 'brig does not probe sandboxes',
  STOPSIGNAL: 'brig stops a sandbox by killing it whole',
  MAINTAINER: 'deprecated; use LABEL',
  ONBUILD: 'brig does not run triggers in later builds',
};

interface Line {
  number: number;
  text: string;
}

/** Joins continuation lines, drops comments and empty lines, reads the parser directives at the top. */
function logicalLines(source: string, warnings: Warning[]): Line[] {
  const raw = source.replace(/^\uFEFF/, '').split(/\r?\n/);
  const lines: Line[] = [];
  let directives = true;
  let current: Line | undefined;
  for (let index = 0; index < raw.length; index++) {
    const number = index + 1;
    const text = raw[index] as string;
    const directive = /^#\s*([A-Za-z]+)\s*=\s*(.*?)\s*$/.exec(text);
    if (directives && current === undefined && directive !== null) {
      const key = (directive[1] as string).toLowerCase();
      if (key === 'escape' && directive[2] !== '\\') throw invalidAt(number, `the escape directive ${JSON.stringify(directive[2])} is not supported`, 'brig supports only the default escape character, a backslash');
      if (key !== 'escape' && key !== 'syntax' && key !== 'check') warnings.push({ line: number, message: `parser directive "${key}" ignored` });
      continue;
    }
    directives = false;
    if (/^\s*#/.test(text)) continue;
    if (current === undefined && text.trim() === '') continue;
    // Docker allows empty lines inside a continued instruction
    if (current !== undefined && text.trim() === '') continue;
    const continued = /\\\s*$/.test(text);
    const piece = continued ? text.replace(/\\\s*$/, '') : text;
    if (current === undefined) current = { number, text: piece };
    else current.text += piece;
    if (!continued) {
      lines.push(current);
      current = undefined;
    }
  }
  if (current !== undefined) lines.push(current);
  return lines;
}

export function parseDockerfile(source: string): Dockerfile {
  const warnings: Warning[] = [];
  const globalArgs: Dockerfile['globalArgs'] = [];
  const instructions: Instruction[] = [];
  for (const { number, text } of logicalLines(source, warnings)) {
    const match = /^\s*([A-Za-z]+)(?:\s+([\s\S]*?))?\s*$/.exec(text);
    if (match === null) throw invalidAt(number, `${JSON.stringify(text.trim().slice(0, 60))} is not an instruction`);
    const keyword = (match[1] as string).toUpperCase();
    const rest = match[2] ?? '';
    const ignored = IGNORED[keyword];
    if (ignored !== undefined) {
      warnings.push({ line: number, message: `${keyword} ignored: ${ignored}` });
      continue;
    }
    let instruction: Instruction;
    try {
      instruction = parseInstruction(keyword, rest, number, text.trim());
    } catch (error) {
      if (error instanceof WordError) throw invalidAt(number, error.message, 'close every quote; a backslash escapes the next character');
      throw error;
    }
    if (instruction.kind === 'FROM') {
      if (instructions.length > 0) throw invalidAt(number, 'a second FROM: multi-stage builds are not supported', 'build each stage as its own image (FROM can name a brig image), or merge the stages into one');
    } else if (instructions.length === 0) {
      if (instruction.kind !== 'ARG') throw invalidAt(number, `${keyword} before FROM`, 'a Dockerfile starts with FROM (only ARG may come before it)');
      globalArgs.push(...instruction.args);
      continue;
    }
    instructions.push(instruction);
  }
  if (instructions.length === 0) throw invalidAt(1, 'no FROM instruction', 'a Dockerfile starts with FROM IMAGE: debian:SUITE, debian:SUITE-slim, scratch or a brig image');
  return { globalArgs, instructions, warnings };
}

function parseInstruction(keyword: string, rest: string, line: number, text: string): Instruction {
  const at = { line, text };
  if ((keyword === 'RUN' || keyword === 'COPY' || keyword === 'ADD') && /(^|[^<])<<-?\s*["']?[A-Za-z_]/.test(rest)) throw invalidAt(line, `${keyword} with a heredoc is not supported`, 'write the lines out with && and \\ continuations, or COPY a script and RUN it');
  switch (keyword) {
    case 'FROM': {
      const { args } = takeFlags(rest, line, {});
      if (args.length === 1) return { ...at, kind: 'FROM', image: args[0] as string };
      if (args.length === 3 && (args[1] as string).toUpperCase() === 'AS') return { ...at, kind: 'FROM', image: args[0] as string, stage: args[2] as string };
      throw invalidAt(line, 'FROM takes an image and optionally AS NAME', 'FROM debian:bookworm, FROM scratch, FROM myimage:tag');
    }
    case 'ARG':
      return { ...at, kind: 'ARG', args: parseArgs(rest, line) };
    case 'ENV':
    case 'LABEL':
      return { ...at, kind: keyword, pairs: parsePairs(keyword, rest, line) };
    case 'RUN': {
      const { flags, body } = takeFlagsRaw(rest, line, { network: true });
      const network = flags.get('network');
      if (network !== undefined && network !== 'default' && network !== 'none' && network !== 'host') throw invalidAt(line, `RUN --network=${network}: only default, none or host`, 'RUN --network=none runs the step offline; host needs `brig image build --network host`');
      if (body.trim() === '') throw invalidAt(line, 'RUN needs a command', 'RUN apt-get update');
      return { ...at, kind: 'RUN', command: commandForm(body), ...(network === undefined ? {} : { network }) };
    }
    case 'CMD':
    case 'ENTRYPOINT':
      if (rest === '') throw invalidAt(line, `${keyword} needs a command`, `${keyword} ["program", "arg"] (exec form) or ${keyword} program arg (shell form)`);
      return { ...at, kind: keyword, command: commandForm(rest) };
    case 'COPY':
    case 'ADD':
      return { ...parseCopy(keyword, rest, line), ...at };
    case 'WORKDIR':
    case 'USER':
      if (rest === '') throw invalidAt(line, `${keyword} needs a value`, keyword === 'USER' ? 'USER name, USER uid or USER uid:gid' : 'WORKDIR /path');
      return { ...at, kind: keyword, value: rest };
    case 'SHELL': {
      const form = commandForm(rest);
      if (!('exec' in form) || form.exec.length === 0) throw invalidAt(line, 'SHELL must be a JSON array', 'SHELL ["/bin/bash", "-c"]');
      return { ...at, kind: 'SHELL', shell: form.exec };
    }
    default:
      throw invalidAt(line, `unknown instruction ${keyword}`);
  }
}

/** A JSON array of strings is the exec form; anything else is the shell form (as Docker decides). */
function commandForm(rest: string): CommandForm {
  if (rest.startsWith('[')) {
    try {
      const parsed = JSON.parse(rest) as unknown;
      if (Array.isArray(parsed) && parsed.every((item) => typeof item === 'string')) return { exec: parsed };
    } catch {
      // not JSON: the shell form, as Docker does
    }
  }
  return { shell: rest };
}

/** Leading --name=value flags, checked against what the instruction accepts; the rest of the line untouched. */
function takeFlagsRaw(rest: string, line: number, allowed: Record<string, boolean>): { flags: Map<string, string>; body: string } {
  const flags = new Map<string, string>();
  let body = rest;
  for (let match = /^--([A-Za-z-]+)(?:=(\S*))?\s*/.exec(body); match !== null; match = /^--([A-Za-z-]+)(?:=(\S*))?\s*/.exec(body)) {
    const name = match[1] as string;
    if (!(name in allowed)) throw invalidAt(line, `the flag --${name} is not supported here`, flagHint(name));
    if (match[2] === undefined && allowed[name]) throw invalidAt(line, `--${name} needs a value (--${name}=VALUE)`);
    flags.set(name, match[2] ?? 'true');
    body = body.slice(match[0].length);
  }
  return { flags, body };
}

function takeFlags(rest: string, line: number, allowed: Record<string, boolean>): { flags: Map<string, string>; args: string[] } {
  const { flags, body } = takeFlagsRaw(rest, line, allowed);
  return { flags, args: body.split(/\s+/).filter((word) => word !== '') };
}

function flagHint(name: string): string {
  if (name === 'from') return 'multi-stage builds are not supported: COPY takes files from the build context only';
  if (name === 'mount') return 'RUN --mount is not supported: COPY what the step needs first';
  if (name === 'platform') return 'brig builds for the host\'s platform only';
  return HINT;
}

function parseArgs(rest: string, line: number): Array<{ name: string; value?: string }> {
  const words = splitWords(rest);
  if (words.length === 0) throw invalidAt(line, 'ARG needs a name', 'ARG NAME or ARG NAME=default');
  return words.map((word) => {
    const equals = word.indexOf('=');
    const name = equals === -1 ? word : word.slice(0, equals);
    checkVarName(name, 'ARG', line);
    return equals === -1 ? { name } : { name, value: word.slice(equals + 1) };
  });
}

function checkVarName(name: string, keyword: string, line: number): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw invalidAt(line, `${keyword} name ${JSON.stringify(name)} is not a variable name`, 'a name is letters, digits and _, not starting with a digit');
}

/** `K=V K2="v 2"`, or the old form `K the rest of the line` (Docker's parseNameVal). */
function parsePairs(keyword: 'ENV' | 'LABEL', rest: string, line: number): Pair[] {
  const words = splitWords(rest);
  if (words.length === 0) throw invalidAt(line, `${keyword} needs a name and a value`, `${keyword} NAME=value`);
  const first = words[0] as string;
  if (!first.includes('=')) {
    const split = /^(\S+)\s+([\s\S]+)$/.exec(rest);
    if (split === null) throw invalidAt(line, `${keyword} ${first} has no value`, `${keyword} NAME=value, or ${keyword} NAME value`);
    if (keyword === 'ENV') checkVarName(first, keyword, line);
    return [{ key: first, value: split[2] as string }];
  }
  return words.map((word) => {
    const equals = word.indexOf('=');
    if (equals === -1) throw invalidAt(line, `${keyword}: ${JSON.stringify(word)} has no '='`, `every word is NAME=value; quote a value with spaces: ${keyword} NAME="a b"`);
    const key = word.slice(0, equals);
    if (key === '') throw invalidAt(line, `${keyword}: a pair has an empty name`, `${keyword} NAME=value`);
    if (keyword === 'ENV') checkVarName(key, keyword, line);
    return { key, value: word.slice(equals + 1) };
  });
}

function parseCopy(keyword: 'COPY' | 'ADD', rest: string, line: number): Instruction & { kind: 'COPY' | 'ADD' } {
  const { flags, body } = takeFlagsRaw(rest, line, { chown: true, chmod: true, link: false });
  const form = commandForm(body);
  const words = 'exec' in form ? form.exec : body.split(/\s+/).filter((word) => word !== '');
  if (words.length < 2) throw invalidAt(line, `${keyword} needs at least one source and a destination`, `${keyword} SRC... DEST (sources relative to the build context)`);
  const sources = words.slice(0, -1);
  for (const source of sources) {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(source) || source.startsWith('git@')) {
      throw invalidAt(line, `${keyword} of a URL (${source}) is not supported: a build has no network for it`, 'download the file into the build context first, then COPY it');
    }
  }
  const chmodText = flags.get('chmod');
  let chmod: number | undefined;
  if (chmodText !== undefined) {
    if (!/^[0-7]{3,4}$/.test(chmodText)) throw invalidAt(line, `--chmod=${chmodText} is not an octal mode`, '--chmod=755 or --chmod=0644');
    chmod = parseInt(chmodText, 8);
  }
  const chown = flags.get('chown');
  return {
    line,
    text: '',
    kind: keyword,
    sources,
    dest: words[words.length - 1] as string,
    ...(chown === undefined ? {} : { chown }),
    ...(chmod === undefined ? {} : { chmod }),
  };
}
