import assert from 'node:assert/strict';
import { BrigError, type ErrorCode } from '../../src/protocol/index.ts';

/** Runs fn, expects a BrigError with this code, and returns it for further checks. */
export function brigErrorFrom(fn: () => unknown, code: ErrorCode): BrigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof BrigError, `expected a BrigError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.ok(error.hint.length > 0, 'every BrigError carries a hint');
    return error;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}

export async function brigErrorFromAsync(fn: () => Promise<unknown>, code: ErrorCode): Promise<BrigError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof BrigError, `expected a BrigError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}

/** The "path: reason" parts of a BRIG_POLICY_INVALID message, without its source. */
export function problemsOf(error: BrigError, source: string): string[] {
  assert.ok(error.message.startsWith(`${source}: `), `message starts with its source: ${error.message}`);
  return error.message.slice(source.length + 2).split('; ');
}

export function isDeeplyFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeeplyFrozen);
}
