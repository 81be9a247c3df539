import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BrigError, ERROR_CODES } from '../../src/protocol/index.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const rows = new Map(
  [...doc.matchAll(/^\| `(BRIG_[A-Z_]+)` \| (\d+) \| (\d+) \| (.+?) \| (.+?) \|$/gm)].map((match) => [match[1] ?? '', { exit: Number(match[2]), http: Number(match[3]), when: match[4] ?? '', solve: match[5] ?? '' }]),
);

test('every registered code has a row in docs/errors.md with the same exit code and text', () => {
  for (const [code, spec] of Object.entries(ERROR_CODES)) {
    const row = rows.get(code);
    assert.ok(row, `docs/errors.md has no row for ${code}`);
    assert.equal(row.exit, spec.exit, `${code}: exit code differs`);
    assert.equal(row.http, spec.http, `${code}: HTTP status differs`);
    assert.equal(row.when, spec.when, `${code}: "when" differs`);
    assert.ok(row.solve.length > 10, `${code}: says how to solve it`);
  }
});

test('docs/errors.md lists no code the registry lacks', () => {
  for (const code of rows.keys()) assert.ok(code in ERROR_CODES, `${code} is documented but not registered`);
});

test('a BrigError formats as one line of error and one of hint', () => {
  const error = new BrigError('BRIG_USAGE', 'unknown flag --x', 'see `brig run --help`');
  assert.equal(error.format(), 'brig: unknown flag --x [BRIG_USAGE]\n  hint: see `brig run --help`');
  assert.equal(error.exitCode, 125);
});
