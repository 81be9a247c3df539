/**
 * The build context: the directory whose files COPY and ADD may take. A
 * source is a path (or a glob, as Docker's filepath.Match) inside it; one
 * that leaves it (`..`), or passes through a symlink on the way, is refused.
 * Symlinks are copied as symlinks, never followed. .dockerignore patterns
 * hide files as if they were not in the context. `hashSources` gives the
 * content hash a COPY's cache key needs; `listSources` what to copy.
 */
import { createHash } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { BrigError } from '../protocol/index.ts';

export interface ContextEntry {
  /** Path relative to the context, '/'-separated. */
  rel: string;
  /** Path relative to the source root it was found under ('' for the root itself). */
  under: string;
  stats: Stats;
}

/** One COPY source after glob expansion: its root and every entry below it (root first, sorted). */
export interface Source {
  rel: string;
  isDir: boolean;
  entries: ContextEntry[];
}

function failed(message: string, hint: string): BrigError {
  return new BrigError('BRIG_BUILD_FAILED', message, hint);
}

/** Compiled .dockerignore: later patterns win; `!` re-includes. */
export class IgnoreRules {
  private readonly rules: Array<{ negate: boolean; regex: RegExp }>;
  readonly hasExceptions: boolean;

  constructor(text: string) {
    this.rules = text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => {
        const negate = line.startsWith('!');
        const pattern = posix.normalize((negate ? line.slice(1) : line).trim()).replace(/^\/+/, '').replace(/\/+$/, '');
        return { negate, regex: new RegExp(`^${globToRegex(pattern, true)}(/.*)?$`) };
      });
    this.hasExceptions = this.rules.some((rule) => rule.negate);
  }

  ignored(rel: string): boolean {
    let result = false;
    for (const rule of this.rules) if (rule.regex.test(rel)) result = !rule.negate;
    return result;
  }
}

/** A glob as Docker reads it: * and ? within one component, [...] classes, \ escapes; `**` any depth when allowed. */
export function globToRegex(pattern: string, doubleStar: boolean): string {
  let out = '';
  for (let index = 0; index < pattern.length; index++) {
    const ch = pattern[index] as string;
    if (ch === '*') {
      if (doubleStar && pattern[index + 1] === '*') {
        index++;
        if (pattern[index + 1] === '/') {
          index++;
          out += '(.*/)?';
        } else out += '.*';
      } else out += '[^/]*';
    } else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', index + 2);
      if (end === -1) out += '\\[';
      else {
        const inside = pattern.slice(index + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
        out += `[${inside}]`;
        index = end;
      }
    } else if (ch === '\\' && index + 1 < pattern.length) out += escapeRegex(pattern[++index] as string);
    else out += escapeRegex(ch);
  }
  return out;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export async function loadIgnore(context: string): Promise<IgnoreRules> {
  const text = await fs.readFile(join(context, '.dockerignore'), 'utf8').catch(() => '');
  return new IgnoreRules(text);
}

/** The context-relative path of a source, refused when it leaves the context. */
function cleanSource(source: string): string {
  const rel = posix.normalize(`./${source}`.replace(/^\.\/\/+/, './'));
  if (rel === '..' || rel.startsWith('../')) throw failed(`the source ${JSON.stringify(source)} is outside the build context`, 'COPY and ADD take files from inside the build directory only; move the file there');
  return rel === '.' ? '' : rel.replace(/\/$/, '');
}

const GLOB = /[*?[]/;

/** Expands a source (maybe a glob) to context-relative paths that exist and are not ignored. */
export async function expandSource(context: string, source: string, ignore: IgnoreRules): Promise<string[]> {
  const rel = cleanSource(source);
  const parts = rel === '' ? [] : rel.split('/');
  let found = [''];
  for (const part of parts) {
    const next: string[] = [];
    for (const base of found) {
      const dir = join(context, base);
      const stats = await fs.lstat(dir).catch(() => null);
      if (stats === null) continue;
      if (stats.isSymbolicLink() && base !== '') throw failed(`the source ${JSON.stringify(source)} passes through the symlink ${base}`, 'brig never follows a symlink in a COPY source; name the real path');
      if (!stats.isDirectory()) continue;
      if (!GLOB.test(part)) {
        next.push(base === '' ? part : `${base}/${part}`);
        continue;
      }
      const regex = new RegExp(`^${globToRegex(part, false)}$`);
      for (const name of (await fs.readdir(dir)).sort()) if (regex.test(name)) next.push(base === '' ? name : `${base}/${name}`);
    }
    found = next;
  }
  const existing: string[] = [];
  for (const path of found) {
    if (path !== '' && ignore.ignored(path)) continue;
    if ((await fs.lstat(join(context, path)).catch(() => null)) !== null) existing.push(path);
  }
  if (existing.length === 0) throw failed(`the source ${JSON.stringify(source)} is not in the build context${GLOB.test(source) ? ' (no file matches)' : ''}`, 'sources are relative to the build directory (and not excluded by its .dockerignore)');
  return existing;
}

/** Every entry of a source, without following any symlink; ignored entries left out. */
export async function listSource(context: string, rel: string, ignore: IgnoreRules): Promise<Source> {
  const rootStats = await fs.lstat(join(context, rel));
  const entries: ContextEntry[] = [{ rel, under: '', stats: rootStats }];
  if (rootStats.isDirectory()) await walk(context, rel, '', ignore, entries);
  return { rel, isDir: rootStats.isDirectory(), entries };
}

async function walk(context: string, rel: string, under: string, ignore: IgnoreRules, into: ContextEntry[]): Promise<void> {
  const dir = join(context, rel);
  for (const name of (await fs.readdir(dir)).sort()) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const childUnder = under === '' ? name : `${under}/${name}`;
    const stats = await fs.lstat(join(context, childRel));
    const isIgnored = ignore.ignored(childRel);
    if (isIgnored && !(stats.isDirectory() && ignore.hasExceptions)) continue;
    if (!isIgnored) into.push({ rel: childRel, under: childUnder, stats });
    if (stats.isDirectory()) await walk(context, childRel, childUnder, ignore, into);
  }
}

/** sha256 over what a COPY copies: names, types, modes, sizes, contents, link targets (not times or owners). */
export async function hashSources(context: string, sources: Source[]): Promise<string> {
  const hash = createHash('sha256');
  for (const source of sources) {
    hash.update(`source\0${source.rel}\0`);
    for (const entry of source.entries) {
      const { stats } = entry;
      hash.update(`${entry.under}\0${stats.mode.toString(8)}\0`);
      if (stats.isSymbolicLink()) hash.update(`link\0${await fs.readlink(join(context, entry.rel))}\0`);
      else if (stats.isFile()) {
        hash.update(`file\0${stats.size}\0`);
        for await (const chunk of await openNoFollow(join(context, entry.rel))) hash.update(chunk as Buffer);
      } else hash.update('dir\0');
    }
  }
  return hash.digest('hex');
}

/** A read stream of a file opened O_NOFOLLOW: a symlink swapped in after the walk is not followed. */
export async function openNoFollow(path: string): Promise<Readable> {
  const handle = await fs.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  return handle.createReadStream();
}
