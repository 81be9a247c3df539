import type { SandboxPlan } from '../plan/index.ts';
import { renderOci, type OciMount } from './oci.ts';
import { findRunsc, pickPlatform } from './runsc.ts';
import { runscArgv } from './run.ts';
import { launchArgv } from './launch.ts';
import { canStage } from '../host/index.ts';

/** The plan as gVisor renders it, for --dry-run: runsc's command line, how it is launched, and the OCI config it reads. */
export function describeGvisor(plan: SandboxPlan): { lines: string[]; json: Record<string, unknown> } {
  const render = renderOci(plan);
  const runsc = { path: findRunsc() ?? 'runsc', version: '', platform: pickPlatform() };
  const dir = '<run-dir>';
  const inner = runscArgv(runsc, plan, render, dir);
  const argv = launchArgv({ runscArgv: inner, render, dir, dieWithParent: true }, render.sources.map((source) => ({ path: source.path, identity: '<dev:ino at launch>' })));
  const config = render.config as { process: { args: string[] }; mounts: OciMount[] };
  const lines = [
    `runsc: ${inner.join(' ')}`,
    canStage()
      ? `launch: in a private mount namespace, ${render.sources.length} bind sources staged in the bundle, each checked to be the inode opened without following links`
      : 'launch: bind sources checked just before runsc starts (no staging on this host)',
    `command (pid 1 is brig's init): ${config.process.args.slice(config.process.args.indexOf('--') + 1).join(' ')}`,
    ...config.mounts.map((mount) => `mount ${mount.destination}: ${mount.type}${mount.type === 'bind' ? ` ${mount.source}` : ''} (${mount.options.join(',')})`),
    ...render.folds.map((fold) => `mount ${fold.target}: ${fold.kind === 'file' ? `bundle file ${fold.file ?? ''}` : 'empty tmpfs'}, read-only, mounted by the staging wrapper in ${render.sources[fold.source]?.path ?? '?'}`),
    ...render.skeleton.map((entry) => (entry.kind === 'symlink' ? `root: ${entry.path} -> ${entry.linkTo}` : `root: ${entry.kind} ${entry.path}`)),
  ];
  return { lines, json: { argv, config: render.config, skeleton: render.skeleton, folds: render.folds, files: render.files.map((file) => ({ name: file.name, mode: file.mode, bytes: Buffer.byteLength(file.data) })) } };
}
