/**
 * Runs one TypeScript file on Node 20, which cannot strip types itself (no
 * --experimental-strip-types before Node 22.6). Bundled with sucrase to
 * dist/inside/ts-run.cjs, uploaded into a sandbox by the job runner and run as
 *
 *   node /home/user/.brig-job/ts-run.cjs /home/user/.brig-job/main.ts [args...]
 *
 * It removes the types only (no type check), writes main.mjs beside main.ts and
 * imports it: an ES module, so `import` and top-level await work and `require`
 * is not defined, as in any .mjs (`createRequire` from node:module gives one). One
 * file: its imports of other .ts files are not transformed. sucrase keeps every
 * statement on its original line, so a stack naming main.mjs:12 means line 12
 * of main.ts (columns can differ where types were removed).
 *
 * Exit: the script's own code (process.exitCode, process.exit) or 0; 1 for a
 * syntax error or an uncaught error, reported as Node reports it; 2 for usage.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { format, parse, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { transform } from 'sucrase';

const USAGE = 'usage: ts-run <file.ts> [args...]\n';

function fail(message: string, exitCode: number): never {
  process.stderr.write(message);
  process.exit(exitCode);
}

/** sucrase's parse errors carry a 1-based position; anything else is its own bug, reported as is. */
function describeTransformError(sourcePath: string, error: unknown): string {
  const loc = (error as { loc?: { line: number; column: number } }).loc;
  const message = error instanceof Error ? error.message : String(error);
  if (!loc) return `ts-run: ${sourcePath}: ${message}\n`;
  return `ts-run: ${sourcePath}:${loc.line}:${loc.column}: ${message.replace(/ \(\d+:\d+\)$/, '')}\n`;
}

function stripTypes(sourcePath: string, source: string): string {
  try {
    // disableESTransforms: Node 20 runs every ES feature itself, so class fields and `?.` stay exactly as written.
    return transform(source, { transforms: ['typescript'], disableESTransforms: true }).code;
  } catch (error) {
    return fail(describeTransformError(sourcePath, error), 1);
  }
}

const sourceArg = process.argv[2];
if (!sourceArg) fail(USAGE, 2);
const sourcePath = resolve(sourceArg);
const { dir, name } = parse(sourcePath);
const modulePath = format({ dir, name, ext: '.mjs' });
if (modulePath === sourcePath) fail(`ts-run: ${sourcePath} is already .mjs; run it with node\n`, 2);

let source: string;
try {
  source = readFileSync(sourcePath, 'utf8');
} catch (error) {
  fail(`ts-run: cannot read ${sourcePath}: ${(error as Error).message}\n`, 1);
}
writeFileSync(modulePath, stripTypes(sourcePath, source), { mode: 0o600 });
// The mode above applies only when the file is new; a rerun overwrites last run's file.
chmodSync(modulePath, 0o600);

// The script sees itself as the program, as under `node main.ts`: [node, main.ts, ...args].
process.argv.splice(1, 2, sourcePath);
// Left unhandled on purpose: Node then reports a throw in the script as it does under `node main.mjs`, with the
// line, the stack and exit 1, and the script's own 'uncaughtException' handlers still run.
void import(pathToFileURL(modulePath).href);
