import type { Writable } from 'node:stream';
import { BrigError } from '../../protocol/index.ts';
import { parseArgs, type FlagSpec } from '../args.ts';

/**
 * What every client command shares: flags that may follow the operands
 * (`brig rm box --data`, as docker allows), tables for people, JSON for
 * scripts, and writes that wait for a slow reader.
 */

export interface Parsed {
  flags: Map<string, string[]>;
  operands: string[];
}

/**
 * parseArgs (src/cli/args.ts), letting flags and operands mix; after `--`
 * everything is an operand. Only for commands that run no command of their
 * own: exec and shell keep "flags first", so a command's flags stay its own.
 */
export function parseMixed(argv: string[], specs: Record<string, FlagSpec>, usage: string): Parsed {
  const flags = new Map<string, string[]>();
  const operands: string[] = [];
  let words = argv;
  while (words.length > 0) {
    const { flags: found, rest } = parseArgs(words, specs, usage);
    for (const [name, values] of found) {
      const before = flags.get(name) ?? [];
      if (before.length > 0 && !specs[name]?.repeat) throw new BrigError('BRIG_USAGE', `--${name} given twice`, 'give it once');
      flags.set(name, [...before, ...values]);
    }
    if (rest.length === 0) break;
    if (words[words.length - rest.length - 1] === '--') {
      operands.push(...rest);
      break;
    }
    operands.push(rest[0] ?? '');
    words = rest.slice(1);
  }
  return { flags, operands };
}

/** Exactly the operands named, or a usage error saying what is missing or extra. */
export function operandsOf(parsed: Parsed, names: string[], usage: string): string[] {
  if (parsed.operands.length !== names.length) {
    const problem = parsed.operands.length < names.length ? `needs ${names.join(' and ')}` : `takes ${names.length} argument${names.length === 1 ? '' : 's'}, got ${parsed.operands.length}`;
    throw new BrigError('BRIG_USAGE', `${usage} ${problem}`, `see \`${usage} --help\``);
  }
  return parsed.operands;
}

/** Columns padded to their widest cell, as `docker ps` prints them. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('   ');
  return [header, ...rows].map(line).join('\n') + '\n';
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** 1536 → "1.5KiB": powers of 1024, as the policy's sizes are. */
export function bytes(count: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value < 10 ? value.toFixed(1) : Math.round(value)}${units[unit]}`;
}

/** A span as its largest unit or two: "45s", "12m", "3h20m", "2d4h". */
export function span(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours}h${minutes % 60}m` : `${hours}h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days}d${hours % 24}h` : `${days}d`;
}

/** Resolves once the stream has taken the bytes: a slow reader (a pipe to `less`) slows the sandbox's output, not brig's memory. */
export function write(stream: Writable, data: string | Buffer): Promise<void> {
  if (stream.write(data)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      stream.off('drain', done);
      stream.off('error', done);
      if (error) reject(error);
      else resolve();
    };
    stream.once('drain', done);
    stream.once('error', done);
  });
}

/** How an error ends a command: the usual two lines, or one JSON object on stderr when the caller asked for JSON. */
export function reportError(error: BrigError, asJson: boolean): void {
  process.stderr.write(asJson ? JSON.stringify({ error: { code: error.code, message: error.message, hint: error.hint } }) + '\n' : error.format() + '\n');
}
