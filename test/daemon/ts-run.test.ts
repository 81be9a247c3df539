/**
 * The TypeScript job runner (src/daemon/jobs/ts-run.ts), run as the job runner runs it: the built bundle, under
 * plain Node, on a main.ts in a directory of its own. Build first: `npm run build`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TS_RUN = fileURLToPath(new URL('../../dist/inside/ts-run.cjs', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'brig-ts-run-'));
let jobCount = 0;

interface Job {
  dir: string;
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Writes `source` as main.ts in a fresh directory and runs it; the env has no NODE_OPTIONS, so tsx is not there to help. */
function runJob(source: string, args: string[] = [], prepare?: (dir: string) => void): Job {
  const dir = join(root, `job-${jobCount++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'main.ts'), source);
  prepare?.(dir);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const result = spawnSync(process.execPath, [TS_RUN, join(dir, 'main.ts'), ...args], { cwd: dir, env, encoding: 'utf8' });
  return { dir, status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('ts-run: a TypeScript file run on Node 20 without a build step', () => {
  before(() => assert.ok(existsSync(TS_RUN), `${TS_RUN} is missing: run \`npm run build\` first`));
  after(() => rmSync(root, { recursive: true, force: true }));

  test('interfaces, enums, generics and parameter properties run, their types gone', () => {
    const job = runJob(`
      interface Named { name: string }
      type Pair<T> = [T, T];
      enum Level { Low = 1, High }
      class Box<T extends Named> {
        constructor(private readonly item: T, public level: Level = Level.High) {}
        label(): string { return \`\${this.item.name}:\${this.level}\`; }
      }
      const pair: Pair<number> = [Level.Low, Level.High];
      const first = <T,>(items: T[]): T | undefined => items[0];
      console.log(new Box({ name: 'a' }).label(), pair.join(','), first<string>(['x', 'y']), Level[2]);
    `);
    assert.equal(job.stderr, '');
    assert.equal(job.stdout, 'a:2 1,2 x High\n');
    assert.equal(job.status, 0);
  });

  test('ES module imports from node: and top-level await', () => {
    const job = runJob(
      `
      import fs from 'node:fs';
      import { readFileSync } from 'node:fs';
      import type { Stats } from 'node:fs';
      const stats: Stats = await fs.promises.stat('data.txt');
      await new Promise((done) => setTimeout(done, 10));
      console.log(readFileSync('data.txt', 'utf8').trim(), stats.size);
    `,
      [],
      (dir) => writeFileSync(join(dir, 'data.txt'), 'hello\n'),
    );
    assert.equal(job.stderr, '');
    assert.equal(job.stdout, 'hello 6\n');
    assert.equal(job.status, 0);
  });

  test('process.argv is [node, main.ts, ...args], as under `node main.ts`', () => {
    const job = runJob('console.log(JSON.stringify(process.argv));', ['a', 'b c', '--flag']);
    assert.deepEqual(JSON.parse(job.stdout), [process.execPath, join(job.dir, 'main.ts'), 'a', 'b c', '--flag']);
  });

  test('the script\'s process.exitCode is the exit code', () => {
    const job = runJob('const code: number = 3;\nprocess.exitCode = code;\n');
    assert.equal(job.stderr, '');
    assert.equal(job.status, 3);
  });

  test('a thrown error exits 1 with a stack naming its line in main.ts, types removed above it', () => {
    const job = runJob('interface Options {\n  depth: number;\n}\nenum Mode { A, B }\nconst options: Options = { depth: Mode.B };\nthrow new Error(`depth ${options.depth}`);\n');
    assert.equal(job.status, 1);
    assert.match(job.stderr, /Error: depth 1\n/);
    assert.match(job.stderr, /\bat [^\n]*main\.(ts|mjs):6:\d+/);
  });

  test('a syntax error exits 1 with ts-run: file:line:col: message, and runs nothing', () => {
    const job = runJob('console.log("ran");\nconst x: number = ;\n');
    assert.equal(job.status, 1);
    assert.equal(job.stdout, '');
    assert.match(job.stderr, new RegExp(`^ts-run: ${join(job.dir, 'main.ts')}:2:19: Unexpected token\\n$`));
  });

  test('main.mjs is written beside main.ts with mode 0600, over an older one', () => {
    const job = runJob('console.log("new");\n', [], (dir) => {
      writeFileSync(join(dir, 'main.mjs'), 'console.log("old");\n');
      chmodSync(join(dir, 'main.mjs'), 0o644);
    });
    assert.equal(job.stdout, 'new\n');
    assert.equal(statSync(join(job.dir, 'main.mjs')).mode & 0o777, 0o600);
  });

  test('no file argument exits 2 with usage', () => {
    const result = spawnSync(process.execPath, [TS_RUN], { encoding: 'utf8' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^usage: ts-run <file\.ts>/);
  });
});
