import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkSource, stagePoint } from '../host/index.ts';
import { BUNDLE_PREFIX, type OciMount, type OciRender } from './oci.ts';

/**
 * Writes a rendered spec down as an OCI bundle in `dir` (made 0700: it holds
 * the sandbox's passwd and environment): config.json, the skeleton root and
 * the files bound from it. With `staged`, every host bind names its staging
 * point in the bundle instead of its path (stage.ts). Returns the config as written.
 */
export function writeBundle(render: OciRender, dir: string, staged: boolean): Record<string, unknown> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const root = join(dir, 'rootfs');
  mkdirSync(root, { mode: 0o755 });
  for (const entry of render.skeleton) {
    const path = join(root, entry.path);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    if (entry.kind === 'symlink') symlinkSync(entry.linkTo, path);
    else if (entry.kind === 'dir') mkdirSync(path, { recursive: true, mode: 0o755 });
    else writeFileSync(path, '', { mode: 0o444, flag: 'a' });
  }
  // An image's layers are bound here, then its overlay is mounted on rootfs (stage.ts).
  if (render.image) {
    mkdirSync(join(dir, 'layers'), { mode: 0o700 });
    render.image.layers.forEach((_, index) => mkdirSync(join(dir, 'layers', String(index)), { mode: 0o700 }));
  }
  const files = join(dir, 'files');
  mkdirSync(files, { mode: 0o755 });
  for (const file of render.files) {
    writeFileSync(join(files, file.name), file.data, { mode: file.mode });
    // The umask must not narrow the plan's mode (a 0644 passwd is read by every user inside).
    chmodSync(join(files, file.name), file.mode);
  }
  const mounts = (render.config.mounts as OciMount[]).map((mount) =>
    mount.source.startsWith(BUNDLE_PREFIX) ? { ...mount, source: join(files, mount.source.slice(BUNDLE_PREFIX.length)) } : mount,
  );
  if (staged) {
    mkdirSync(join(dir, 'stage'), { mode: 0o700 });
    render.sources.forEach((source, index) => {
      const point = stagePoint(dir, index);
      if (source.directory) mkdirSync(point, { mode: 0o700 });
      else writeFileSync(point, '', { mode: 0o400 });
      mounts[source.mount] = { ...(mounts[source.mount] as OciMount), source: point };
    });
  }
  const config = { ...render.config, mounts };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2), { mode: 0o600 });
  return config;
}

/**
 * Without staging (a host lacking unshare, mount or bash): every host source
 * opened again just before runsc starts, one component at a time without
 * following a link (host/sources.ts), so a link planted since the plan was
 * made is refused. runsc's gofer opens the path itself a moment later: a swap
 * in between is not caught there (docs/tiers.md says so).
 */
export function checkSources(render: OciRender): void {
  for (const source of render.sources) checkSource(source.path, source.field);
}
