import { ENVD_INSIDE, programRuntime } from '../../drivers/index.ts';
import type { JobKind } from './types.ts';
import { GUI_LAUNCHER } from './gui.ts';

/**
 * How each kind runs: its code is written to a file in the sandbox (under
 * the user's home: relative paths are the home's for envd's files and
 * processes alike) and run by the sandbox's interpreter. TypeScript needs
 * none of the sandbox's: the Node that runs envd inside every sandbox (from
 * the host, with its own libraries: envd-runtime) runs brig's ts-run.cjs,
 * which strips the types and imports the result (src/daemon/jobs/ts-run.ts),
 * so it works on any image and on Node 20. A gui job's script is run by
 * brig's launcher, which brings the desktop up first (gui.ts).
 */

export const JOB_DIR = '.brig-job';
export const TS_RUNNER = `${JOB_DIR}/ts-run.cjs`;

export interface JobProgram {
  /** Where the code goes, relative to the home. */
  file: string;
  cmd: string;
  args: string[];
}

export function jobProgram(kind: JobKind): JobProgram {
  switch (kind) {
    case 'shell':
      return { file: `${JOB_DIR}/main.sh`, cmd: '/bin/bash', args: [`${JOB_DIR}/main.sh`] };
    case 'gui':
      return { file: `${JOB_DIR}/main.sh`, cmd: '/bin/bash', args: [GUI_LAUNCHER] };
    case 'python':
      return { file: `${JOB_DIR}/main.py`, cmd: 'python3', args: [`${JOB_DIR}/main.py`] };
    case 'typescript': {
      const [cmd, ...args] = programRuntime(ENVD_INSIDE, process.execPath).argv(TS_RUNNER, `${JOB_DIR}/main.ts`);
      return { file: `${JOB_DIR}/main.ts`, cmd: cmd as string, args };
    }
  }
}
