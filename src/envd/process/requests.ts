import { ConnectError, type ProcessConfig, type PtySize } from '../../protocol/index.ts';
import type { Message } from '../rpc.ts';

/**
 * Requests of process.Process, read from proto3 JSON and checked field by
 * field: a malformed message is answered invalid_argument naming the field,
 * never a crash. Fields we do not know are ignored, as proto3 readers do.
 */

export interface StartOptions {
  config: ProcessConfig & { args: string[]; envs: Record<string, string> };
  pty: PtySize | null;
  tag: string | null;
  stdin: boolean;
}

/** A selector as given: the pid, or the tag. */
export type Selector = { pid: number } | { tag: string };

export type InputKind = 'stdin' | 'pty';

export interface Input {
  kind: InputKind;
  data: Buffer;
}

function invalid(message: string): ConnectError {
  return new ConnectError('invalid_argument', message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function objectField(value: unknown, field: string): Record<string, unknown> {
  if (!isObject(value)) throw invalid(`${field} must be an object`);
  return value;
}

/** A string without NUL bytes: the kernel cannot pass one to exec. */
function execString(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalid(`${field} must be a string`);
  if (value.includes('\0')) throw invalid(`${field} contains a NUL byte`);
  return value;
}

/** proto3 JSON writes uint32 as a number, and readers also take a decimal string. */
function uint32(value: unknown, field: string): number {
  const number = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 0 || number > 0xffffffff) throw invalid(`${field} must be an unsigned 32-bit integer`);
  return number;
}

export function parseStart(message: Message): StartOptions {
  const process = objectField(message.process, 'process');
  const cmd = execString(process.cmd, 'process.cmd');
  if (cmd === '') throw invalid('process.cmd must not be empty');

  const args: string[] = [];
  if (process.args !== undefined && process.args !== null) {
    if (!Array.isArray(process.args)) throw invalid('process.args must be an array of strings');
    process.args.forEach((arg, index) => args.push(execString(arg, `process.args[${index}]`)));
  }

  const envs: Record<string, string> = {};
  if (process.envs !== undefined && process.envs !== null) {
    for (const [name, value] of Object.entries(objectField(process.envs, 'process.envs'))) {
      if (name === '' || name.includes('=') || name.includes('\0')) throw invalid(`process.envs has an invalid variable name ${JSON.stringify(name)}`);
      envs[name] = execString(value, `process.envs.${name}`);
    }
  }

  const config: StartOptions['config'] = { cmd, args, envs };
  if (process.cwd !== undefined && process.cwd !== null) config.cwd = execString(process.cwd, 'process.cwd');

  let pty: PtySize | null = null;
  if (message.pty !== undefined && message.pty !== null) pty = parsePtySize(objectField(message.pty, 'pty').size, 'pty.size', true);

  let tag: string | null = null;
  if (message.tag !== undefined && message.tag !== null) {
    if (typeof message.tag !== 'string') throw invalid('tag must be a string');
    tag = message.tag;
  }

  if (message.stdin !== undefined && message.stdin !== null && typeof message.stdin !== 'boolean') throw invalid('stdin must be a boolean');
  // As E2B's envd: stdin stays open unless the caller says otherwise (SDKs before envd 0.3.0 never say).
  return { config, pty, tag, stdin: message.stdin !== false };
}

/**
 * A terminal size. At start, a missing or zero size means 80×24 (what E2B's
 * envd gets from a zero winsize is a terminal nobody can use); a resize must
 * give both.
 */
export function parsePtySize(value: unknown, field: string, defaults = false): PtySize {
  if ((value === undefined || value === null) && defaults) return { cols: 80, rows: 24 };
  const size = objectField(value, field);
  const dimension = (name: 'cols' | 'rows', fallback: number): number => {
    const raw = size[name];
    const number = raw === undefined || raw === null ? 0 : uint32(raw, `${field}.${name}`);
    if (number === 0 && defaults) return fallback;
    if (number < 1 || number > 0xffff) throw invalid(`${field}.${name} must be between 1 and 65535`);
    return number;
  };
  return { cols: dimension('cols', 80), rows: dimension('rows', 24) };
}

/** The `process` selector of Connect, SendInput, SendSignal, CloseStdin and Update. */
export function parseSelector(value: unknown, field = 'process'): Selector {
  const selector = objectField(value, field);
  if (selector.pid !== undefined && selector.pid !== null) return { pid: uint32(selector.pid, `${field}.pid`) };
  if (selector.tag !== undefined && selector.tag !== null) {
    if (typeof selector.tag !== 'string') throw invalid(`${field}.tag must be a string`);
    return { tag: selector.tag };
  }
  throw invalid(`${field} must have a pid or a tag`);
}

/** proto3 JSON bytes: base64, standard or URL-safe, padded or not. */
function bytes(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) throw invalid(`${field} must be base64`);
  return Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64');
}

export function parseInput(value: unknown, field = 'input'): Input {
  const input = objectField(value, field);
  if (input.stdin !== undefined && input.stdin !== null) return { kind: 'stdin', data: bytes(input.stdin, `${field}.stdin`) };
  if (input.pty !== undefined && input.pty !== null) return { kind: 'pty', data: bytes(input.pty, `${field}.pty`) };
  throw invalid(`${field} must have stdin or pty`);
}

/** process.Signal, by name (as the SDK's JSON writes it) or by number. */
export function parseSignal(value: unknown): 'SIGTERM' | 'SIGKILL' {
  if (value === 'SIGNAL_SIGKILL' || value === 9) return 'SIGKILL';
  if (value === 'SIGNAL_SIGTERM' || value === 15) return 'SIGTERM';
  throw invalid(`signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL, not ${JSON.stringify(value) ?? 'nothing'}`);
}
