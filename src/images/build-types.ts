/**
 * The contract between the image builder and whatever runs a RUN step. The
 * images room never imports drivers: the caller (the CLI, the daemon) injects
 * a StepRunner that runs one command in a jail over the layers so far and
 * leaves the step's writes in `upper` (docs/images.md, "Building from a
 * Dockerfile").
 */
export interface RunStep {
  layers: string[];      // absolute layer dirs, lowest first (store.layerDir(digest))
  upper: string; work: string;  // fresh empty dirs in <store>/tmp (same filesystem)
  command: string[];     // shell form: ['/bin/sh', '-c', text]
  env: Record<string, string>; workdir: string; user: string; // 'root', a name, uid[:gid]
  network: 'none' | 'mirror' | 'host'; // mirror: only the host apt sources' hosts
  output: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface RunStepResult { exitCode: number; idOffset: number }

export type StepRunner = (step: RunStep) => Promise<RunStepResult>;
