import type { Policy, PolicyInput } from './types.ts';
import { isPlainObject, setOwn, validatePolicy } from './validate.ts';

/**
 * The one merge rule: objects merge field by field, everything else (arrays,
 * strings, numbers, booleans, null) replaces. So `filesystem: { readOnly: [...] }`
 * keeps the other filesystem fields but replaces the whole readOnly list, and
 * `environment.set` merges by variable name. A field that is absent (or
 * undefined) leaves the base as it was.
 *
 * The result is checked as a complete Policy (cross-field rules such as
 * soft ≤ hard can only be judged after merging) and deep-frozen; base and
 * input are never modified.
 */
export function applyPolicyInput(base: Policy, input: PolicyInput, source = 'policy'): Policy {
  return validatePolicy(mergeValue(base, input), source);
}

function mergeValue(base: unknown, change: unknown): unknown {
  if (change === undefined) return base;
  if (!isPlainObject(change) || !isPlainObject(base)) return change;
  const merged: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(base)) setOwn(merged, key, value);
  for (const [key, value] of Object.entries(change)) {
    if (value !== undefined) setOwn(merged, key, mergeValue(Object.hasOwn(base, key) ? base[key] : undefined, value));
  }
  return merged;
}
