import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** Where tests keep what is slow to make and the same every time (as test/helpers/images.ts): the guest kernel in <cache>/vm. */
export function testCacheDir(): string {
  return process.env.BRIG_TEST_CACHE ?? '/var/tmp/brig-test-cache';
}

/** The static brig-init of this checkout: a stand-in /init for the initramfs tests (the VM's own init is built elsewhere). */
export const BRIG_INIT = new URL('../../../native/spawn/build/Release/brig-init', import.meta.url).pathname;

/**
 * A minimal ELF64 relocatable file (little-endian) whose .modinfo holds
 * `modinfo` (NUL-separated key=value strings), plus a .bss whose size
 * points far past the end of the file, as a NOBITS section may: a module
 * as far as reading its dependencies goes.
 */
export function fakeModule(modinfo: string[]): Buffer {
  const names = Buffer.from('\0.shstrtab\0.modinfo\0.bss\0');
  const info = Buffer.from(modinfo.map((field) => `${field}\0`).join(''));
  const header = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(header);
  header.writeUInt16LE(1, 0x10); // ET_REL
  header.writeUInt16LE(62, 0x12); // x86-64
  header.writeUInt32LE(1, 0x14);
  const tableOffset = 64 + names.length + info.length;
  header.writeBigUInt64LE(BigInt(tableOffset), 0x28);
  header.writeUInt16LE(64, 0x34);
  header.writeUInt16LE(64, 0x3a);
  header.writeUInt16LE(4, 0x3c);
  header.writeUInt16LE(1, 0x3e);
  const section = (name: number, type: number, offset: number, size: number): Buffer => {
    const entry = Buffer.alloc(64);
    entry.writeUInt32LE(name, 0);
    entry.writeUInt32LE(type, 4);
    entry.writeBigUInt64LE(BigInt(offset), 0x18);
    entry.writeBigUInt64LE(BigInt(size), 0x20);
    return entry;
  };
  return Buffer.concat([
    header,
    names,
    info,
    section(0, 0, 0, 0),
    section(1, 3, 64, names.length), // SHT_STRTAB
    section(20, 8, 1 << 20, 1 << 20), // SHT_NOBITS: no bytes in the file
    section(11, 1, 64 + names.length, info.length), // SHT_PROGBITS
  ]);
}

/** Writes fake modules under `dir`, by path, each with the depends= value given: { 'kernel/fs/virtiofs.ko': 'fuse,virtio' }. */
export function writeFakeModules(dir: string, modules: Record<string, string>): void {
  for (const [path, depends] of Object.entries(modules)) {
    mkdirSync(dirname(`${dir}/${path}`), { recursive: true });
    writeFileSync(`${dir}/${path}`, fakeModule(['license=GPL', `depends=${depends}`, 'intree=Y', `vermagic=9.9.9 SMP mod_unload`]));
  }
}
