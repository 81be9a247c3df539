// The entry of dist/vm-gate.cjs (scripts/build.mjs); see gate.ts.
import { main } from './gate.ts';

main().catch((error: unknown) => {
  process.stderr.write(`brig-vm-gate: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
