import { createRequire } from 'node:module';

/**
 * The daemon, the CLI's client commands, envd, `brig agent`, `brig image` and the egress of
 * an allowlist `brig run` are bundles of their own, beside this one (dist/):
 * a plain `brig run` never pays for parsing them.
 */
export function loadBundle(name: 'daemon' | 'client' | 'envd' | 'agent' | 'run-egress' | 'image'): unknown {
  return createRequire(__filename)(`${__dirname}/${name}.cjs`);
}
