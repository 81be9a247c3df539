import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI, through its launcher, exactly as users run it. */
export const BRIG = fileURLToPath(new URL('../../bin/brig', import.meta.url));

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

export function startBrig(args: string[], options: RunOptions = {}): ChildProcess {
  return spawn(BRIG, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function runBrig(args: string[], options: RunOptions = {}): Promise<Result> {
  const child = startBrig(args, options);
  return collect(child, options.input);
}

export function collect(child: ChildProcess, input?: string): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin?.end(input ?? '');
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** A fresh workspace directory, removed by the returned function. */
export function tempWorkspace(prefix = 'brig-test-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Poll a condition a bounded number of times (no wall-clock limits in tests). */
export async function eventually(check: () => boolean, attempts = 500, pauseMs = 20): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return check();
}
