import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_POLICY, POLICY_SCHEMA, validatePolicy, validatePolicyInput } from '../../src/policy/index.ts';
import type { SchemaNode } from '../../src/policy/schema.ts';
import type { NetworkMode } from '../../src/policy/index.ts';

/** The schema node a $ref points at, or the node itself. */
function target(node: SchemaNode): SchemaNode {
  if (node.$ref === undefined) return node;
  const found = POLICY_SCHEMA.$defs[node.$ref.replace('#/$defs/', '')];
  assert.ok(found, `${node.$ref} resolves`);
  return found;
}

/** Every field path in the schema, with its node: "filesystem.readOnly", "resources.openFiles.soft", … */
function schemaFields(node: SchemaNode, prefix = ''): Map<string, SchemaNode> {
  const fields = new Map<string, SchemaNode>();
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    if (key === '$schema') continue;
    const path = prefix + key;
    fields.set(path, child);
    for (const [inner, innerNode] of schemaFields(child, `${path}.`)) fields.set(inner, innerNode);
  }
  return fields;
}

/** Every field path in a policy object (a record such as environment.set counts as one field). */
function policyFields(value: Record<string, unknown>, prefix = '', records = ['environment.set']): string[] {
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix + key;
    const isGroup = typeof child === 'object' && child !== null && !Array.isArray(child) && !records.includes(path);
    return isGroup ? [path, ...policyFields(child as Record<string, unknown>, `${path}.`, records)] : [path];
  });
}

function walkNodes(node: SchemaNode, visit: (node: SchemaNode, where: string) => void, where = '#'): void {
  visit(node, where);
  for (const [key, child] of Object.entries(node.properties ?? {})) walkNodes(child, visit, `${where}/properties/${key}`);
  if (node.items) walkNodes(node.items, visit, `${where}/items`);
  if (node.additionalProperties) walkNodes(node.additionalProperties, visit, `${where}/additionalProperties`);
  if (node.propertyNames) walkNodes(node.propertyNames, visit, `${where}/propertyNames`);
}

describe('POLICY_SCHEMA and the Policy type agree', () => {
  it('DEFAULT_POLICY is a valid input and a valid complete policy', () => {
    assert.deepEqual(validatePolicyInput(DEFAULT_POLICY, 'DEFAULT_POLICY'), DEFAULT_POLICY);
    assert.deepEqual(validatePolicy(DEFAULT_POLICY, 'DEFAULT_POLICY'), DEFAULT_POLICY);
  });

  it('every field of DEFAULT_POLICY is in the schema, and every schema field is in DEFAULT_POLICY', () => {
    const inSchema = [...schemaFields(POLICY_SCHEMA).keys()].sort();
    const inDefaults = policyFields(DEFAULT_POLICY as unknown as Record<string, unknown>).sort();
    assert.deepEqual(inSchema, inDefaults);
  });

  it('every field has a description, and every leaf field a default equal to DEFAULT_POLICY', () => {
    for (const [path, node] of schemaFields(POLICY_SCHEMA)) {
      assert.ok(node.description && node.description.length > 20, `${path} has a description that says what and why`);
      if (node.properties && path.split('.').length === 1) continue; // sections: their fields carry the defaults
      const expected = path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)[key], DEFAULT_POLICY);
      assert.deepEqual(node.default, expected, `${path} default`);
    }
  });

  it('every object with properties refuses unknown keys, and every $ref resolves', () => {
    const nodes = [POLICY_SCHEMA as SchemaNode, ...Object.values(POLICY_SCHEMA.$defs)];
    for (const root of nodes) {
      walkNodes(root, (node, where) => {
        if (node.properties) assert.equal(node.additionalProperties, false, `${where} has additionalProperties: false`);
        target(node);
      });
    }
  });

  it('is deeply frozen, like DEFAULT_POLICY', () => {
    assert.ok(Object.isFrozen(POLICY_SCHEMA));
    assert.ok(Object.isFrozen(POLICY_SCHEMA.properties));
    assert.throws(() => {
      (POLICY_SCHEMA as { title: string }).title = 'changed';
    }, TypeError);
  });

  it('offers exactly the network modes the Policy type has', () => {
    const network = POLICY_SCHEMA.properties?.network?.properties?.mode;
    assert.deepEqual(network?.enum, ['none', 'allowlist', 'host'] satisfies NetworkMode[]);
  });
});
