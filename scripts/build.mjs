// One CommonJS bundle per program: Node's start-up dominates `brig run`;
// resolving dozens of modules, or starting the ESM loader, costs more than
// reading one file. envd is its own bundle: it is the one file mounted
// read-only into every sandbox; the daemon is its own too: `brig run` loads
// neither. Native and heavy packages stay in node_modules (external).
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: 'linked',
  // node-pty and brig-spawn are native (their .node files load from node_modules); yaml loads only for YAML files.
  external: ['node-pty', 'brig-spawn', 'yaml', 'better-sqlite3', 'fastify', '@fastify/swagger', '@fastify/swagger-ui'],
  logLevel: 'warning',
};

await Promise.all([
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/brig.cjs' }),
  build({ ...common, entryPoints: ['src/envd/main.ts'], outfile: 'dist/envd.cjs' }),
  build({ ...common, entryPoints: ['src/daemon/main.ts'], outfile: 'dist/daemon.cjs' }),
  build({ ...common, entryPoints: ['src/cli/client/main.ts'], outfile: 'dist/client.cjs' }),
  // brig agent and an allowlist brig run's proxy and gateway: loaded only by those (src/cli/bundles.ts).
  build({ ...common, entryPoints: ['src/cli/agent.ts'], outfile: 'dist/agent.cjs' }),
  build({ ...common, entryPoints: ['src/cli/run-egress.ts'], outfile: 'dist/run-egress.cjs' }),
  // Mounted into allowlist jails, which see none of brig's node_modules: undici is bundled in.
  build({ ...common, external: [], sourcemap: false, minify: true, entryPoints: ['src/egress/inside/node-proxy.ts', 'src/egress/inside/undici.ts'], outdir: 'dist/inside', outExtension: { '.js': '.cjs' } }),
]);
