import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDurationMs, parseSizeMiB } from '../../src/policy/index.ts';
import { brigErrorFrom } from './helpers.ts';

describe('parseSizeMiB', () => {
  const cases: [string, number][] = [
    ['1024', 1024],
    ['512m', 512],
    ['512M', 512],
    ['512MiB', 512],
    ['512mb', 512],
    ['2g', 2048],
    ['2 GB', 2048],
    ['1.5GiB', 1536],
    ['.5g', 512],
    ['1t', 1048576],
    ['2048k', 2],
    ['1000k', 0], // rounds down to whole MiB; the validator then refuses what is too small
    [' 64 ', 64],
  ];
  for (const [text, mib] of cases) it(`${JSON.stringify(text)} is ${mib} MiB`, () => assert.equal(parseSizeMiB(text), mib));

  it('refuses anything else with BRIG_USAGE, naming the flag and with a hint', () => {
    for (const text of ['', 'lots', '-1', '2x', '1e3', '2 g b', 'g', '1..5g']) {
      const error = brigErrorFrom(() => parseSizeMiB(text, '--memory'), 'BRIG_USAGE');
      assert.equal(error.message, `--memory: ${JSON.stringify(text)} is not a size`);
      assert.match(error.hint, /512m, 2g/);
    }
  });
});

describe('parseDurationMs', () => {
  const cases: [string, number][] = [
    ['90', 90_000],
    ['0', 0],
    ['1.5', 1500],
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1h30m', 5_400_000],
    ['1m30s500ms', 90_500],
    ['2.5s', 2500],
    ['30S', 30_000],
  ];
  for (const [text, ms] of cases) it(`${JSON.stringify(text)} is ${ms} ms`, () => assert.equal(parseDurationMs(text), ms));

  it('refuses anything else with BRIG_USAGE', () => {
    for (const text of ['', 'soon', '-5s', '5 minutes', '1h 30m', '5x', 'ms', '1e3']) {
      const error = brigErrorFrom(() => parseDurationMs(text, '--timeout'), 'BRIG_USAGE');
      assert.equal(error.message, `--timeout: ${JSON.stringify(text)} is not a duration`);
      assert.match(error.hint, /30s, 5m/);
    }
  });
});
