import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { applyPolicyInput, DEFAULT_POLICY, loadPolicyFile, resolvePolicy } from '../../src/policy/index.ts';
import { brigErrorFromAsync, isDeeplyFrozen } from './helpers.ts';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'brig-policy-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a file in the temporary directory and returns its path. */
async function file(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
  return path;
}

describe('loadPolicyFile', () => {
  it('reads JSON, validates it and returns a frozen input', async () => {
    const path = await file('p.json', '{ "name": "json-one", "resources": { "memoryMiB": 512 }, "network": { "mode": "host" } }');
    const input = await loadPolicyFile(path);
    assert.deepEqual(input, { name: 'json-one', resources: { memoryMiB: 512 }, network: { mode: 'host' } });
    assert.ok(isDeeplyFrozen(input));
  });

  it('reads JSON with a byte-order mark, and drops $schema', async () => {
    const path = await file('bom.json', '\uFEFF{ "$schema": "./policy.schema.json", "name": "bom" }');
    assert.deepEqual(await loadPolicyFile(path), { name: 'bom' });
  });

  it('reads YAML (.yaml and .yml) as YAML 1.2: "no" stays a string', async () => {
    const yaml = 'name: yaml-one\nenvironment:\n  set:\n    ANSWER: no\n    PORT: "3000"\nresources:\n  cpus: 0.5\n';
    for (const name of ['p.yaml', 'p.yml', 'UPPER.YAML']) {
      assert.deepEqual(await loadPolicyFile(await file(name, yaml)), {
        name: 'yaml-one',
        environment: { set: { ANSWER: 'no', PORT: '3000' } },
        resources: { cpus: 0.5 },
      });
    }
  });

  it('resolves ".", "./x" and "../x" against the file\'s directory and leaves "~" for resolvePolicy', async () => {
    const path = await file('project/config/brig.yaml', 'filesystem:\n  workspace: ..\n  readOnly: [., ./cache, ../data/, ~/.npmrc, /abs]\n  hidden: [../.env]\n');
    const input = await loadPolicyFile(path);
    assert.deepEqual(input.filesystem, {
      workspace: join(dir, 'project'),
      readOnly: [join(dir, 'project/config'), join(dir, 'project/config/cache'), join(dir, 'project/data'), '~/.npmrc', '/abs'],
      hidden: [join(dir, 'project/.env')],
    });
    // The cwd does not matter any more for these paths; "~" still resolves against home.
    const resolved = resolvePolicy(applyPolicyInput(DEFAULT_POLICY, input), { cwd: '/elsewhere', home: '/home/ada' });
    assert.equal(resolved.filesystem.workspace, join(dir, 'project'));
    assert.equal(resolved.filesystem.readOnly[3], '/home/ada/.npmrc');
  });

  it('refuses invalid content with BRIG_POLICY_INVALID naming the file and every field', async () => {
    const path = await file('bad.yaml', 'resources:\n  memoryMiB: 8\nfilesystem:\n  readOnly: [/ok, /ok2, src]\nnetwork:\n  mode: wifi\n');
    const error = await brigErrorFromAsync(() => loadPolicyFile(path), 'BRIG_POLICY_INVALID');
    assert.equal(
      error.message,
      `${path}: resources.memoryMiB: must be an integer from 16 to 1073741824, got 8; filesystem.readOnly[2]: must be a path (absolute, or starting with ~ or .), got "src"; network.mode: must be one of "none", "allowlist", "host", got "wifi"`,
    );
  });

  it('refuses an empty file', async () => {
    const error = await brigErrorFromAsync(async () => loadPolicyFile(await file('empty.yaml', '# nothing yet\n')), 'BRIG_POLICY_INVALID');
    assert.match(error.message, /empty\.yaml: must be a mapping, got null$/);
  });

  it('reports JSON syntax errors with line and column', async () => {
    const path = await file('syntax.json', '{\n  "name": "x",\n  "tools" ["git"]\n}\n');
    const error = await brigErrorFromAsync(() => loadPolicyFile(path), 'BRIG_POLICY_FILE');
    assert.match(error.message, new RegExp(`^${escape(path)}:3:11: .+`));
    assert.match(error.hint, /line 3, column 11/);
    const truncated = await file('truncated.json', '{\n  "name": "x",\n');
    assert.match((await brigErrorFromAsync(() => loadPolicyFile(truncated), 'BRIG_POLICY_FILE')).message, new RegExp(`^${escape(truncated)}:3:1: .+$`));
  });

  it('reports YAML syntax errors, duplicate keys, several documents and unknown tags with line and column', async () => {
    const cases: [string, string, RegExp][] = [
      ['indent.yaml', 'name: x\nfilesystem:\n  readOnly: [/a, /b\n', /:4:1: /],
      ['duplicate.yaml', 'name: x\nresources:\n  memoryMiB: 512\n  memoryMiB: 1024\n', /:4:3: Map keys must be unique$/],
      ['two-docs.yaml', 'name: x\n---\nname: y\n', /:2:1: Source contains multiple documents/],
      ['tag.yaml', 'name: !secret x\n', /:1:7: Unresolved tag$/],
      ['tab.yaml', 'filesystem:\n\treadOnly: []\n', /:2:1: /],
    ];
    for (const [name, content, pattern] of cases) {
      const path = await file(name, content);
      const error = await brigErrorFromAsync(() => loadPolicyFile(path), 'BRIG_POLICY_FILE');
      assert.ok(error.message.startsWith(`${path}:`), error.message);
      assert.match(error.message, pattern, name);
    }
  });

  it('refuses a YAML alias to a missing anchor', async () => {
    const error = await brigErrorFromAsync(async () => loadPolicyFile(await file('alias.yaml', 'tools: *missing\n')), 'BRIG_POLICY_FILE');
    assert.match(error.message, /alias\.yaml/);
  });

  it('refuses unreadable files and unknown extensions with BRIG_POLICY_FILE', async () => {
    const missing = join(dir, 'missing.json');
    assert.equal((await brigErrorFromAsync(() => loadPolicyFile(missing), 'BRIG_POLICY_FILE')).message, `${missing}: cannot read the file (no such file or directory)`);
    await brigErrorFromAsync(async () => loadPolicyFile(await file('a-directory.yaml/inner', '')).then(() => loadPolicyFile(join(dir, 'a-directory.yaml'))), 'BRIG_POLICY_FILE');
    for (const name of ['policy.toml', 'policy', 'policy.json.txt']) {
      const error = await brigErrorFromAsync(async () => loadPolicyFile(await file(name, '{}')), 'BRIG_POLICY_FILE');
      assert.match(error.hint, /\.json, \.yaml or \.yml/);
    }
  });
});

describe('examples/policies', () => {
  const examples = fileURLToPath(new URL('../../examples/policies/', import.meta.url));
  for (const name of ['node-project.yaml', 'offline-build.json']) {
    it(`${name} loads, opens with name and description, and applies to the defaults`, async () => {
      const input = await loadPolicyFile(join(examples, name));
      assert.deepEqual(Object.keys(input).slice(0, 2), ['name', 'description']);
      assert.equal(input.name, name.replace(/\.\w+$/, ''));
      assert.ok((input.description ?? '').length > 40, 'the description says what the policy opens and why');
      applyPolicyInput(DEFAULT_POLICY, input, name);
    });
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
