// One CommonJS bundle per program: Node's start-up dominates `brig run`;
// resolving dozens of modules, or starting the ESM loader, costs more than
// reading one file. envd is its own bundle: it is the one file mounted
// read-only into every sandbox; the daemon is its own too: `brig run` loads
// neither. Native and heavy packages stay in node_modules (external).
import { cpSync } from 'node:fs';
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
  // The tier registry reads import.meta.url only when it runs from the sources (under tsx); bundled, it uses __filename.
  logOverride: { 'empty-import-meta': 'silent' },
};

await Promise.all([
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/brig.cjs' }),
  build({ ...common, entryPoints: ['src/envd/main.ts'], outfile: 'dist/envd.cjs' }),
  build({ ...common, entryPoints: ['src/daemon/main.ts'], outfile: 'dist/daemon.cjs' }),
  build({ ...common, entryPoints: ['src/cli/client/main.ts'], outfile: 'dist/client.cjs' }),
  // brig agent and an allowlist brig run's proxy and gateway: loaded only by those (src/cli/bundles.ts).
  build({ ...common, entryPoints: ['src/cli/agent.ts'], outfile: 'dist/agent.cjs' }),
  // brig image: the image store, loaded only by that command.
  build({ ...common, entryPoints: ['src/cli/image.ts'], outfile: 'dist/image.cjs' }),
  build({ ...common, entryPoints: ['src/cli/run-egress.ts'], outfile: 'dist/run-egress.cjs' }),
  // Each tier but the jail: loaded by the registry (src/drivers/registry.ts) when first asked for.
  build({ ...common, entryPoints: ['src/drivers/gvisor/index.ts'], outfile: 'dist/tier-gvisor.cjs' }),
  build({ ...common, entryPoints: ['src/drivers/vm/index.ts'], outfile: 'dist/tier-vm.cjs' }),
  // The host side of a daemon sandbox's VM (src/drivers/vm/gate.ts): one small process per VM, beside QEMU.
  build({ ...common, entryPoints: ['src/drivers/vm/gate-main.ts'], outfile: 'dist/vm-gate.cjs' }),
  // Mounted into allowlist jails, which see none of brig's node_modules: undici is bundled in. vm-egress is a
  // VM guest's end of the way out (src/drivers/vm/egress-guest.ts). ts-run, with sucrase bundled in, is uploaded
  // into a sandbox to run a TypeScript job (src/daemon/jobs/ts-run.ts).
  build({ ...common, external: [], sourcemap: false, minify: true, entryPoints: ['src/egress/inside/node-proxy.ts', 'src/egress/inside/undici.ts', { in: 'src/drivers/vm/egress-guest.ts', out: 'vm-egress' }, { in: 'src/daemon/jobs/ts-run.ts', out: 'ts-run' }], outdir: 'dist/inside', outExtension: { '.js': '.cjs' } }),
]);
// The built-in image templates (brig image build base) are read at run time from beside the bundles.
cpSync('src/images/templates', 'dist/templates', { recursive: true });
