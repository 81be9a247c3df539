import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_POLICY, validatePolicy, validatePolicyInput } from '../../src/policy/index.ts';
import { brigErrorFrom, isDeeplyFrozen, problemsOf } from './helpers.ts';

/** The problems validatePolicyInput reports for input, as "path: reason" strings. */
function problems(input: unknown): string[] {
  return problemsOf(brigErrorFrom(() => validatePolicyInput(input, 'policy.yaml'), 'BRIG_POLICY_INVALID'), 'policy.yaml');
}

describe('validatePolicyInput', () => {
  it('accepts an empty input and returns a deeply frozen copy', () => {
    const input = { resources: { memoryMiB: 512 }, filesystem: { readOnly: ['/opt/sdk'] } };
    const checked = validatePolicyInput(input, 'flags');
    assert.deepEqual(checked, input);
    assert.notEqual(checked, input);
    assert.ok(isDeeplyFrozen(checked));
    assert.deepEqual(validatePolicyInput({}, 'flags'), {});
  });

  it('is never half-applied: changing the input afterwards does not change what was checked', () => {
    const input = { filesystem: { readOnly: ['/opt/sdk'] } };
    const checked = validatePolicyInput(input, 'code');
    input.filesystem.readOnly.push('relative');
    assert.deepEqual(checked.filesystem?.readOnly, ['/opt/sdk']);
  });

  it('reports every problem at once, each with its exact field path, in one error naming the source', () => {
    const error = brigErrorFrom(
      () =>
        validatePolicyInput(
          {
            resources: { memoryMiB: 8, cpus: 0, pids: 2 },
            filesystem: { readOnly: ['/ok', '~/ok', 'src', './fine'] },
            network: { mode: 'wifi' },
          },
          'policy.yaml',
        ),
      'BRIG_POLICY_INVALID',
    );
    assert.equal(
      error.message,
      'policy.yaml: resources.memoryMiB: must be an integer from 16 to 1073741824, got 8; resources.cpus: must be a number > 0 and ≤ 8192, got 0; ' +
        'resources.pids: must be an integer from 8 to 4194304, got 2; filesystem.readOnly[2]: must be a path (absolute, or starting with ~ or .), got "src"; ' +
        'network.mode: must be one of "none", "allowlist", "host", got "wifi"',
    );
    assert.match(error.hint, /docs\/policy\.md/);
  });

  it('refuses unknown keys at every level, suggesting the field that was meant', () => {
    assert.deepEqual(problems({ filesystem: { readonly: ['/x'] }, network: { mood: 'none' } }), [
      'filesystem.readonly: unknown field (did you mean "readOnly"?)',
      'network.mood: unknown field (did you mean "mode"?)',
    ]);
    const [topLevel] = problems({ netwrok: {}, xyz: 1 });
    assert.equal(topLevel, 'netwrok: unknown field (did you mean "network"?)');
    assert.match(problems({ xyz: 1 })[0] ?? '', /^xyz: unknown field \(known: .*filesystem.*timeouts\)$/);
    assert.deepEqual(problems({ resources: { openFiles: { soft: 100, limit: 5 } } }), ['resources.openFiles.limit: unknown field (known: soft, hard)']);
  });

  it('refuses wrong types', () => {
    assert.deepEqual(problems(null), ['must be a mapping, got null']);
    assert.deepEqual(problems(['name']), ['must be a mapping, got a list']);
    assert.deepEqual(
      problems({
        name: 42,
        tools: 'git',
        filesystem: 'everything',
        resources: { memoryMiB: '2g', cpus: Number.NaN },
        syscalls: { logOnly: 'yes' },
        identity: { uid: 1.5 },
      }),
      [
        'name: must be a short name (letters, digits, . _ -, at most 64), got 42',
        'tools: must be a list of command names or absolute paths, got "git"',
        'filesystem: must be a mapping, got "everything"',
        'resources.memoryMiB: must be an integer from 16 to 1073741824, got "2g"',
        'resources.cpus: must be a number > 0 and ≤ 8192, got NaN',
        'syscalls.logOnly: must be true or false, got "yes"',
        'identity.uid: must be an integer from 0 to 4294967294, or null, got 1.5',
      ],
    );
  });

  it('checks ranges and forms', () => {
    assert.deepEqual(
      problems({
        identity: { uid: -1, gid: 4294967295, hostname: 'under_score' },
        timeouts: { runMs: -5 },
        resources: { openFiles: { soft: 8, hard: 2_000_000 }, maxFileSizeMiB: 0 },
      }),
      [
        'identity.uid: must be an integer from 0 to 4294967294, or null, got -1',
        'identity.gid: must be an integer from 0 to 4294967294, or null, got 4294967295',
        'identity.hostname: must be a hostname (letters, digits, - and dots, at most 64), got "under_score"',
        'timeouts.runMs: must be an integer from 0 to 2147483647, got -5',
        'resources.openFiles.soft: must be an integer from 16 to 1048576, got 8',
        'resources.openFiles.hard: must be an integer from 16 to 1048576, got 2000000',
        'resources.maxFileSizeMiB: must be an integer from 1 to 8589934592, got 0',
      ],
    );
    assert.deepEqual(problems({ identity: { hostname: `${'a'.repeat(60)}.example` } }), [
      `identity.hostname: must be a hostname (letters, digits, - and dots, at most 64), got "${'a'.repeat(57)}..."`,
    ]);
    assert.deepEqual(validatePolicyInput({ identity: { uid: 0, gid: null, hostname: 'build-1.local' }, resources: { cpus: 0.25 } }, 'x'), {
      identity: { uid: 0, gid: null, hostname: 'build-1.local' },
      resources: { cpus: 0.25 },
    });
  });

  it('accepts only the three path forms', () => {
    const good = ['/', '/abs/path', '~', '~/x', '.', './x', '..', '../x'];
    assert.deepEqual(validatePolicyInput({ filesystem: { hidden: good } }, 'x').filesystem?.hidden, good);
    for (const bad of ['', 'src', '.env', '~root/x', '...', 'a/b', '/nul\u0000byte']) {
      assert.equal(problems({ filesystem: { hidden: [bad] } }).length, 1, JSON.stringify(bad));
    }
    assert.deepEqual(problems({ filesystem: { workspace: 'project' } }), [
      'filesystem.workspace: must be a path (absolute, or starting with ~ or .), or null, got "project"',
    ]);
    assert.equal(validatePolicyInput({ filesystem: { workspace: null } }, 'x').filesystem?.workspace, null);
  });

  it('checks environment variable names and values, tools and syscall names', () => {
    assert.deepEqual(
      problems({
        environment: { forward: ['HOME', 'BAD-NAME'], set: { '1ST': 'x', PORT: 3000, OK: 'fine' } },
        tools: ['git', '/opt/bin/tool', './tool', 'a/b'],
        syscalls: { extraDeny: ['ptrace', 'PTRACE'] },
      }),
      [
        'environment.forward[1]: must be a variable name (letters, digits and _, not starting with a digit), got "BAD-NAME"',
        'environment.set["1ST"]: must be a variable name (letters, digits and _, not starting with a digit), got "1ST"',
        'environment.set.PORT: must be a string (quote numbers and booleans in YAML), got 3000',
        'tools[2]: must be a command name (like git) or an absolute path, got "./tool"',
        'tools[3]: must be a command name (like git) or an absolute path, got "a/b"',
        'syscalls.extraDeny[1]: must be a syscall name (lower case, like ptrace), got "PTRACE"',
      ],
    );
  });

  it('refuses soft above hard when both are given', () => {
    assert.deepEqual(problems({ resources: { openFiles: { soft: 4096, hard: 1024 }, processes: { soft: 9, hard: 8 } } }), [
      'resources.openFiles: soft (4096) must not exceed hard (1024)',
      'resources.processes: soft (9) must not exceed hard (8)',
    ]);
  });

  it('treats "__proto__" as a variable name, not as the prototype', () => {
    const input = JSON.parse('{"environment": {"set": {"__proto__": "x"}}}');
    const checked = validatePolicyInput(input, 'x');
    assert.equal(Object.getPrototypeOf(checked.environment?.set), Object.prototype);
    assert.deepEqual(Object.keys(checked.environment?.set ?? {}), ['__proto__']);
    assert.deepEqual(problems(JSON.parse('{"__proto__": {"name": "x"}}')), ['__proto__: unknown field (known: $schema, name, description, filesystem, image, tier, tools, environment, network, identity, resources, syscalls, timeouts)']);
  });

  it('drops $schema (for editors) and fields given as undefined', () => {
    assert.deepEqual(validatePolicyInput({ $schema: './policy.schema.json', name: 'x', description: undefined }, 'x'), { name: 'x' });
  });

  it('caps a flood of problems', () => {
    const reported = problems({ tools: Array.from({ length: 30 }, () => 'a/b') });
    assert.equal(reported.length, 21);
    assert.equal(reported.at(-1), '… and 10 more');
  });
});

describe('validatePolicy (a complete policy)', () => {
  it('names every missing field', () => {
    const { timeouts: _timeouts, ...noTimeouts } = DEFAULT_POLICY;
    const partial = { ...noTimeouts, resources: { ...DEFAULT_POLICY.resources, openFiles: { soft: 10 } } };
    const error = brigErrorFrom(() => validatePolicy(partial, 'code'), 'BRIG_POLICY_INVALID');
    assert.deepEqual(problemsOf(error, 'code'), [
      'resources.openFiles.soft: must be an integer from 16 to 1048576, got 10',
      'resources.openFiles.hard: is missing',
      'timeouts: is missing',
    ]);
  });
});
