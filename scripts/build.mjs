// One CommonJS bundle for the CLI: Node's start-up dominates `brig run`;
// resolving dozens of modules, or starting the ESM loader, costs more than
// reading one file.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/brig.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  splitting: false,
  sourcemap: 'linked',
  // node-pty is native and yaml only loads for YAML files: both stay out of the bundle.
  external: ['node-pty', 'yaml'],
  logLevel: 'warning',
});
