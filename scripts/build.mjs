// One bundle for the CLI: Node's start-up dominates `brig run`, and resolving
// dozens of modules at start costs more than reading one file.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/brig.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  splitting: false,
  sourcemap: 'linked',
  // node-pty is native and yaml only loads for YAML files: both stay out of the bundle.
  external: ['node-pty', 'yaml'],
  banner: { js: "import { createRequire as __brigRequire } from 'node:module'; const require = __brigRequire(import.meta.url);" },
  logLevel: 'warning',
});
