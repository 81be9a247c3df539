/**
 * Kernel modules and the order to load them in. Debian's linux-image package
 * ships no modules.dep (depmod runs at install time), so the dependencies
 * are read from each module itself: its .modinfo section holds NUL-separated
 * key=value strings, one of them `depends=a,b` (empty when it needs nothing),
 * written by modpost from the symbols the module uses.
 *
 * Names: a module's file may spell with '-' what depends= spells with '_'
 * (the kernel treats them alike), so both are normalised to '_'.
 */
import { promises as fs, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BrigError } from '../../protocol/index.ts';

/** A module's name as the kernel compares it: no directory, no .ko, '-' as '_'. */
export function moduleName(fileOrName: string): string {
  return basename(fileOrName).replace(/\.ko$/, '').replaceAll('-', '_');
}

/** The modules `file` (a .ko) depends on, by normalised name, in the order depends= lists them. */
export function moduleDepends(file: string): string[] {
  let modinfo: Buffer;
  try {
    modinfo = elfSection(readFileSync(file), '.modinfo');
  } catch (error) {
    if (error instanceof BrigError) throw new BrigError(error.code, `${file}: ${error.message}`, error.hint);
    throw unreadable(`${file} cannot be read: ${(error as Error).message}`);
  }
  const depends = modinfo
    .toString('latin1')
    .split('\0')
    .find((field) => field.startsWith('depends='));
  if (depends === undefined) return [];
  return depends
    .slice('depends='.length)
    .split(',')
    .filter((name) => name !== '')
    .map(moduleName);
}

/**
 * The module files under `dir` (a lib/modules/<version> tree, searched
 * whole) for the `wanted` names and everything they depend on, each after
 * its dependencies: depth first, in the order `wanted` and each depends=
 * list name them, so the same inputs give the same order.
 */
export async function loadOrder(dir: string, wanted: readonly string[]): Promise<string[]> {
  const { files, compressedFiles } = await moduleFiles(dir);
  const order: string[] = [];
  const done = new Set<string>();
  const visiting: string[] = [];
  const visit = (name: string, neededBy: string | undefined): void => {
    if (done.has(name)) return;
    if (visiting.includes(name)) throw unreadable(`modules depend on each other in a circle: ${[...visiting.slice(visiting.indexOf(name)), name].join(' -> ')}`);
    const file = files.get(name);
    if (file === undefined) {
      const why = neededBy === undefined ? 'the VM guest needs it' : `${neededBy} depends on it`;
      const compressed = compressedFiles.get(name);
      if (compressed !== undefined) throw unreadable(`the kernel package's module ${name} (${why}) is compressed (${basename(compressed)}); brig reads plain .ko files only`);
      throw new BrigError('BRIG_VM_KERNEL_MODULE', `the kernel package has no module ${name} (${why})`, `the guest kernel must build ${name} as a module or into the kernel; a Debian kernel other than the cloud flavour may lack it: ${HINT}`);
    }
    visiting.push(name);
    for (const dependency of moduleDepends(file)) visit(dependency, name);
    visiting.pop();
    done.add(name);
    order.push(file);
  };
  for (const name of wanted) visit(moduleName(name), undefined);
  return order;
}

/**
 * Every .ko under `dir` by normalised name; a name found twice is refused,
 * since which one loads would be a guess. Compressed ones (.ko.xz, .ko.zst:
 * Debian 13 ships those) are listed apart, to name them in an error.
 */
async function moduleFiles(dir: string): Promise<{ files: Map<string, string>; compressedFiles: Map<string, string> }> {
  const files = new Map<string, string>();
  const compressedFiles = new Map<string, string>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    if (/\.ko\.(xz|zst|gz)$/.test(entry.name)) compressedFiles.set(moduleName(entry.name.replace(/\.(xz|zst|gz)$/, '')), file);
    if (!entry.name.endsWith('.ko')) continue;
    const name = moduleName(entry.name);
    const other = files.get(name);
    if (other !== undefined) throw unreadable(`two files are module ${name}: ${other} and ${file}`);
    files.set(name, file);
  }
  return { files, compressedFiles };
}

/** The bytes of the section called `name` of an ELF64 file (either byte order). */
function elfSection(elf: Buffer, name: string): Buffer {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw unreadable('not an ELF file');
  if (elf[4] !== 2) throw unreadable('not a 64-bit ELF file');
  const little = elf[5] === 1;
  const u16 = (at: number): number => (little ? elf.readUInt16LE(at) : elf.readUInt16BE(at));
  const u32 = (at: number): number => (little ? elf.readUInt32LE(at) : elf.readUInt32BE(at));
  const u64 = (at: number): number => Number(little ? elf.readBigUInt64LE(at) : elf.readBigUInt64BE(at));
  const tableOffset = u64(0x28);
  const entrySize = u16(0x3a);
  const count = u16(0x3c);
  const namesIndex = u16(0x3e);
  if (entrySize < 64 || namesIndex >= count || tableOffset + count * entrySize > elf.length) throw unreadable('its section table is cut short');
  const names = sectionData(elf, tableOffset + namesIndex * entrySize, u64);
  for (let index = 0; index < count; index++) {
    const at = tableOffset + index * entrySize;
    const start = u32(at);
    const end = names.indexOf(0, start);
    // .bss and the like have no bytes in the file: only the one asked for is read
    if (names.toString('latin1', start, end === -1 ? names.length : end) === name) return sectionData(elf, at, u64);
  }
  throw unreadable(`it has no ${name} section, so it is not a kernel module`);
}

/** The file bytes of the section whose header is at `header`. */
function sectionData(elf: Buffer, header: number, u64: (at: number) => number): Buffer {
  const offset = u64(header + 0x18);
  const size = u64(header + 0x20);
  if (offset + size > elf.length) throw unreadable('a section runs past the end of the file');
  return elf.subarray(offset, offset + size);
}

const HINT = 'brig takes the guest kernel from linux-image-cloud-<arch> (docs/tiers.md, the VM tier)';

function unreadable(message: string): BrigError {
  return new BrigError('BRIG_VM_KERNEL_MODULE', message, `the kernel package's modules are read as they are shipped (plain .ko); ${HINT}`);
}
