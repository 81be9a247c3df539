import { BrigError } from '../protocol/index.ts';
import { deepFreeze } from './defaults.ts';
import { POLICY_SCHEMA, type JsonType, type SchemaNode } from './schema.ts';
import type { Policy, PolicyInput } from './types.ts';

/**
 * A small validator driven by POLICY_SCHEMA. It knows only the keywords the
 * schema uses ($ref to #/$defs, type, enum, properties, additionalProperties,
 * propertyNames, items, minimum, exclusiveMinimum, maximum, minLength,
 * maxLength, pattern; description, default and errorMessage as annotations),
 * because `brig run` pays for every module it loads: ajv or zod would cost more
 * start-up than the whole policy room.
 *
 * It collects every problem, then throws one BrigError naming each field path,
 * or returns a frozen copy of the input: never a half-checked value, and never
 * one the caller can still change after the check.
 */

export const POLICY_HINT =
  'See docs/policy.md for every field, its type, range and default; docs/policy.schema.json lets an editor check a policy file as you type.';

interface Problem {
  /** Field path, like resources.memoryMiB or filesystem.readOnly[2]; '' for the whole input. */
  path: string;
  reason: string;
}

/** More than this many problems means the input is something else entirely; the rest are counted. */
const MAX_REPORTED = 20;

/** Checks a policy input (a config file's content, flags, a combinator's argument); source names it in errors. */
export function validatePolicyInput(input: unknown, source: string): PolicyInput {
  return check(input, source, false) as PolicyInput;
}

/**
 * Checks a complete Policy: as validatePolicyInput, and every field must be
 * present ($schema aside, which only serves editors). Used on every merge result, so no code path can
 * produce a Policy the schema would refuse.
 */
export function validatePolicy(policy: unknown, source: string): Policy {
  return check(policy, source, true) as Policy;
}

function check(value: unknown, source: string, complete: boolean): unknown {
  const problems: Problem[] = [];
  const copy = walk(POLICY_SCHEMA, value, '', problems, complete);
  checkSoftAtMostHard(copy, problems);
  if (complete) checkNetworkRulesNeedAllowlist(copy, problems);
  if (problems.length > 0) throw new BrigError('BRIG_POLICY_INVALID', formatProblems(source, problems), POLICY_HINT);
  // $schema only serves editors; it is not part of a policy.
  if (isPlainObject(copy)) delete copy.$schema;
  return deepFreeze(copy);
}

function walk(node: SchemaNode, value: unknown, path: string, problems: Problem[], complete: boolean): unknown {
  if (node.$ref !== undefined) value = walk(resolveRef(node.$ref), value, path, problems, complete);
  if (!satisfiesScalar(node, value)) {
    // A whole input that is not a mapping is a file that is not a policy (a key, a log): named by its type only, never quoted.
    const got = path === '' && ['string', 'number', 'boolean'].includes(typeof value) ? `a ${typeof value}` : describeValue(value);
    problems.push({ path, reason: `${mustBe(node)}, got ${got}` });
    return value;
  }
  if (Array.isArray(value) && node.items) {
    const items = node.items;
    return value.map((item, index) => walk(items, item, `${path}[${index}]`, problems, complete));
  }
  if (isPlainObject(value) && (node.properties || node.additionalProperties !== undefined || node.propertyNames)) {
    return walkObject(node, value, path, problems, complete);
  }
  return value;
}

function walkObject(node: SchemaNode, value: Record<string, unknown>, path: string, problems: Problem[], complete: boolean) {
  const copy: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    // An optional field given as undefined (from code) means "not given".
    if (child === undefined) continue;
    const childPath = joinPath(path, key);
    if (node.propertyNames) walk(node.propertyNames, key, childPath, problems, complete);
    const known = node.properties && Object.hasOwn(node.properties, key) ? node.properties[key] : undefined;
    if (known) setOwn(copy, key, walk(known, child, childPath, problems, complete));
    else if (node.additionalProperties === false) problems.push({ path: childPath, reason: unknownField(key, Object.keys(node.properties ?? {})) });
    else if (node.additionalProperties) setOwn(copy, key, walk(node.additionalProperties, child, childPath, problems, complete));
    else setOwn(copy, key, child);
  }
  if (complete) {
    for (const key of Object.keys(node.properties ?? {})) {
      if (key !== '$schema' && value[key] === undefined) problems.push({ path: joinPath(path, key), reason: 'is missing' });
    }
  }
  return copy;
}

/** Every keyword that judges the value itself, not its members. */
function satisfiesScalar(node: SchemaNode, value: unknown): boolean {
  if (node.type !== undefined && !hasType(node.type, value)) return false;
  if (node.enum && !node.enum.includes(value)) return false;
  if (typeof value === 'number') {
    if (node.minimum !== undefined && value < node.minimum) return false;
    if (node.exclusiveMinimum !== undefined && value <= node.exclusiveMinimum) return false;
    if (node.maximum !== undefined && value > node.maximum) return false;
  }
  if (typeof value === 'string') {
    if (node.minLength !== undefined && value.length < node.minLength) return false;
    if (node.maxLength !== undefined && value.length > node.maxLength) return false;
    if (node.pattern !== undefined && !compiled(node.pattern).test(value)) return false;
  }
  return true;
}

function hasType(type: JsonType | JsonType[], value: unknown): boolean {
  return Array.isArray(type) ? type.some((one) => hasType(one, value)) : TYPE_CHECKS[type](value);
}

const TYPE_CHECKS: Record<JsonType, (value: unknown) => boolean> = {
  object: isPlainObject,
  array: Array.isArray,
  string: (value) => typeof value === 'string',
  // NaN and Infinity cannot come from JSON, but can from code; neither is a limit.
  number: (value) => typeof value === 'number' && Number.isFinite(value),
  integer: (value) => Number.isInteger(value),
  boolean: (value) => typeof value === 'boolean',
  null: (value) => value === null,
};

const TYPE_PHRASES: Record<JsonType, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'true or false',
  null: 'null',
};

function mustBe(node: SchemaNode): string {
  return node.errorMessage ?? `must be ${expectedValue(node)}`;
}

/** What a field holds, in words: "an integer ≥ 16", "one of "none", "host"". Also used to render docs/policy.md. */
export function expectedValue(node: SchemaNode): string {
  if (node.$ref !== undefined && node.type === undefined && node.enum === undefined) return expectedValue(resolveRef(node.$ref));
  if (node.errorMessage !== undefined) return node.errorMessage.replace(/^must be /, '');
  if (node.enum) return `one of ${node.enum.map((option) => JSON.stringify(option)).join(', ')}`;
  const types = node.type === undefined ? [] : [node.type].flat();
  let phrase = types.filter((type) => type !== 'null').map((type) => TYPE_PHRASES[type]).join(' or ');
  const low = node.minimum ?? node.exclusiveMinimum;
  if (node.minimum !== undefined && node.maximum !== undefined) phrase += ` from ${node.minimum} to ${node.maximum}`;
  else if (low !== undefined) phrase += (node.minimum !== undefined ? ` ≥ ${low}` : ` > ${low}`) + (node.maximum !== undefined ? ` and ≤ ${node.maximum}` : '');
  else if (node.maximum !== undefined) phrase += ` ≤ ${node.maximum}`;
  if (types.includes('null')) phrase += ', or null';
  return phrase;
}

function checkSoftAtMostHard(value: unknown, problems: Problem[]): void {
  const resources = isPlainObject(value) ? value.resources : undefined;
  if (!isPlainObject(resources)) return;
  for (const field of ['openFiles', 'processes']) {
    const pair = resources[field];
    if (!isPlainObject(pair) || typeof pair.soft !== 'number' || typeof pair.hard !== 'number') continue;
    if (pair.soft > pair.hard) {
      problems.push({ path: `resources.${field}`, reason: `soft (${pair.soft}) must not exceed hard (${pair.hard})` });
    }
  }
}

/** Rules or providers under another mode would be ignored: say so rather than let a reader believe they hold. */
function checkNetworkRulesNeedAllowlist(value: unknown, problems: Problem[]): void {
  const network = isPlainObject(value) ? value.network : undefined;
  if (!isPlainObject(network) || network.mode === 'allowlist') return;
  for (const field of ['allow', 'deny', 'llm']) {
    const list = network[field];
    if (Array.isArray(list) && list.length > 0) {
      problems.push({ path: `network.${field}`, reason: `only applies with mode "allowlist" (mode is ${JSON.stringify(network.mode)}): set network.mode to "allowlist", or remove it` });
    }
  }
}

function formatProblems(source: string, problems: Problem[]): string {
  const shown = problems.slice(0, MAX_REPORTED).map(({ path, reason }) => (path ? `${path}: ${reason}` : reason));
  if (problems.length > MAX_REPORTED) shown.push(`… and ${problems.length - MAX_REPORTED} more`);
  return `${source}: ${shown.join('; ')}`;
}

function unknownField(key: string, known: string[]): string {
  const near = known.find((candidate) => isNear(key, candidate));
  if (near) return `unknown field (did you mean "${near}"?)`;
  return known.length > 0 ? `unknown field (known: ${known.join(', ')})` : 'unknown field';
}

/** Same letters in another case, or at most two edits apart: the usual typos. */
function isNear(typed: string, candidate: string): boolean {
  if (typed.toLowerCase() === candidate.toLowerCase()) return true;
  if (Math.abs(typed.length - candidate.length) > 2 || candidate.length < 4) return false;
  let previous = Array.from({ length: candidate.length + 1 }, (_, index) => index);
  for (let i = 1; i <= typed.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= candidate.length; j += 1) {
      const substitution = (previous[j - 1] ?? 0) + (typed[i - 1] === candidate[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return (previous[candidate.length] ?? Infinity) <= 2;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (isPlainObject(value)) return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'object') return value === null ? 'null' : 'an object';
  return String(value);
}

function joinPath(path: string, key: string): string {
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path ? `${path}.${key}` : key;
}

function resolveRef(ref: string): SchemaNode {
  const target = POLICY_SCHEMA.$defs[ref.replace('#/$defs/', '')];
  if (!target) throw new Error(`policy schema: unknown $ref ${ref}`);
  return target;
}

const patterns = new Map<string, RegExp>();
function compiled(pattern: string): RegExp {
  let regexp = patterns.get(pattern);
  if (!regexp) patterns.set(pattern, (regexp = new RegExp(pattern, 'u')));
  return regexp;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Assignment that treats "__proto__" (a legal variable name) as a key, not as the prototype. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}
