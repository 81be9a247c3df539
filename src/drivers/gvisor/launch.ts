import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { dieWithParent, spawnInside, type CgroupPlan, canStage, sourceIdentities, stagedArgv } from '../host/index.ts';
import type { OciRender } from './oci.ts';
import { checkSources } from './bundle.ts';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface LaunchOptions {
  /** runsc's full argv (its path first). */
  runscArgv: string[];
  render: OciRender;
  /** The sandbox's directory: bundle/ in it, and stage.err for a staging failure. */
  dir: string;
  cgroup: CgroupPlan;
  stdio: [StdioOption, StdioOption, StdioOption];
  /** Die with brig (a foreground run): runsc passes the same to its sandbox. */
  dieWithParent: boolean;
}

type StdioOption = 'inherit' | 'ignore' | 'pipe' | number;

/** The whole command line: the parent-death wrapper, the staging wrapper, runsc. `sources` are the checked identities (placeholders for --dry-run). */
export function launchArgv(options: Pick<LaunchOptions, 'runscArgv' | 'render' | 'dir' | 'dieWithParent'>, sources: Array<{ path: string; identity: string }>): string[] {
  const staged = canStage() ? stagedArgv(`${options.dir}/bundle`, `${options.dir}/stage.err`, options.render.image, sources, options.render.folds, options.runscArgv) : options.runscArgv;
  return options.dieWithParent ? dieWithParent(staged) : staged;
}

/**
 * Start runsc inside the sandbox's cgroups (the Sentry, gofer and ptrace
 * stubs it starts are born there), in its own process group, its bind
 * sources checked just now (stage.ts).
 */
export function launchRunsc(options: LaunchOptions): ChildProcess {
  const sources = canStage() ? sourceIdentities(options.render.sources) : (checkSources(options.render), []);
  const [file, ...args] = launchArgv(options, sources);
  return spawnInside(options.cgroup, () => spawn(file as string, args, { stdio: options.stdio as StdioOptions, env: { PATH }, cwd: '/', detached: true }));
}
