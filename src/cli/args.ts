import { BrigError } from '../protocol/index.ts';

/**
 * A small, strict argument parser: options come first, and the first word
 * that is not an option (or everything after `--`) is the command, so the
 * command's own flags are never read as brig's.
 */
export interface FlagSpec {
  /** Takes a value (`--memory 2g` or `--memory=2g`). */
  value: boolean;
  /** May be given more than once; values are collected in order. */
  repeat?: boolean;
  /** Short alias, like `-h`. */
  short?: string;
}

export interface ParsedArgs {
  flags: Map<string, string[]>;
  rest: string[];
}

export function parseArgs(argv: string[], specs: Record<string, FlagSpec>, usage: string): ParsedArgs {
  const flags = new Map<string, string[]>();
  const byShort = new Map(Object.entries(specs).flatMap(([name, spec]) => (spec.short ? [[spec.short, name] as const] : [])));
  let index = 0;
  while (index < argv.length) {
    const word = argv[index] ?? '';
    if (word === '--') return { flags, rest: argv.slice(index + 1) };
    if (!word.startsWith('-') || word === '-') return { flags, rest: argv.slice(index) };
    const equals = word.indexOf('=');
    const rawName = word.startsWith('--') ? word.slice(2, equals === -1 ? undefined : equals) : byShort.get(word.slice(1)) ?? word;
    const spec = specs[rawName];
    if (!spec) throw new BrigError('BRIG_USAGE', `unknown flag ${word}`, `see \`${usage} --help\``);
    let value = 'true';
    if (spec.value) {
      if (equals !== -1) value = word.slice(equals + 1);
      else {
        index++;
        const next = argv[index];
        if (next === undefined) throw new BrigError('BRIG_USAGE', `${word} needs a value`, `see \`${usage} --help\``);
        value = next;
      }
    } else if (equals !== -1) {
      throw new BrigError('BRIG_USAGE', `--${rawName} takes no value`, `see \`${usage} --help\``);
    }
    const values = flags.get(rawName) ?? [];
    if (values.length > 0 && !spec.repeat) throw new BrigError('BRIG_USAGE', `--${rawName} given twice`, 'give it once');
    flags.set(rawName, [...values, value]);
    index++;
  }
  return { flags, rest: [] };
}
