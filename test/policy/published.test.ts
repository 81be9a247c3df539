import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOCS_FILE, renderPolicyDocs, renderSchemaJson, SCHEMA_FILE } from '../../scripts/write-policy-schema.ts';

const REGENERATE = 'stale: run `node --import tsx scripts/write-policy-schema.ts`';

describe('published policy schema and docs', () => {
  it('docs/policy.schema.json is POLICY_SCHEMA as it is now', () => {
    assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), renderSchemaJson(), `docs/policy.schema.json is ${REGENERATE}`);
  });

  it('the field tables of docs/policy.md are rendered from POLICY_SCHEMA as it is now', () => {
    const docs = readFileSync(DOCS_FILE, 'utf8');
    assert.equal(docs, renderPolicyDocs(docs), `the field tables of docs/policy.md are ${REGENERATE}`);
  });

  it('docs/policy.md documents the merge rule, both file formats, the combinators and the always-on protections', () => {
    const docs = readFileSync(DOCS_FILE, 'utf8');
    for (const needle of ['## The merge rule', '```json', '```yaml', '## Combinators', 'buildPolicy(', '/etc/shadow', 'docs/jail.md']) {
      assert.ok(docs.includes(needle), `docs/policy.md mentions ${needle}`);
    }
  });
});
