import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  allowHosts,
  buildPolicy,
  compose,
  cpus,
  DEFAULT_POLICY,
  denyHosts,
  denySyscalls,
  forwardEnv,
  hide,
  hostNetwork,
  hostname,
  llm,
  llmBudget,
  logSyscallsOnly,
  maxFileSize,
  memory,
  named,
  network,
  noNetwork,
  openFiles,
  pids,
  type Policy,
  type PolicyChange,
  processes,
  readOnly,
  readWrite,
  runAs,
  setEnv,
  timeout,
  tmpfs,
  tmpfsSize,
  tools,
  workspace,
} from '../../src/policy/index.ts';
import { brigErrorFrom, isDeeplyFrozen } from './helpers.ts';

const D = DEFAULT_POLICY;

/** Each combinator, what it must change, as a table. */
const table: [string, PolicyChange, (policy: Policy) => unknown, unknown][] = [
  ['named', named('node', 'Node with npm'), (p) => [p.name, p.description], ['node', 'Node with npm']],
  ['workspace(path)', workspace('~/src/app'), (p) => p.filesystem.workspace, '~/src/app'],
  ['workspace(null)', workspace(null), (p) => p.filesystem.workspace, null],
  ['readOnly', readOnly('/opt/sdk', '~/.cache'), (p) => p.filesystem.readOnly, ['/opt/sdk', '~/.cache']],
  ['readWrite', readWrite('./out'), (p) => p.filesystem.readWrite, ['./out']],
  ['tmpfs', tmpfs('/run/scratch'), (p) => p.filesystem.tmpfs, [...D.filesystem.tmpfs, '/run/scratch']],
  ['hide', hide('./.env'), (p) => p.filesystem.hidden, ['./.env']],
  ['tmpfsSize', tmpfsSize(256), (p) => p.filesystem.tmpfsSizeMiB, 256],
  ['tools', tools('git', '/opt/node/bin/node'), (p) => p.tools, ['git', '/opt/node/bin/node']],
  ['forwardEnv', forwardEnv('CI', 'PATH'), (p) => p.environment.forward, [...D.environment.forward, 'CI']],
  ['setEnv', setEnv('NODE_ENV', 'test'), (p) => p.environment.set, { NODE_ENV: 'test' }],
  ['network', network('host'), (p) => p.network.mode, 'host'],
  ['hostNetwork', hostNetwork(), (p) => p.network.mode, 'host'],
  ['noNetwork', compose(hostNetwork(), noNetwork()), (p) => p.network.mode, 'none'],
  ['runAs', runAs(0, 0), (p) => [p.identity.uid, p.identity.gid], [0, 0]],
  ['hostname', hostname('sandbox-1'), (p) => p.identity.hostname, 'sandbox-1'],
  ['memory', memory(4096), (p) => p.resources.memoryMiB, 4096],
  ['cpus', cpus(0.5), (p) => p.resources.cpus, 0.5],
  ['pids', pids(64), (p) => p.resources.pids, 64],
  ['openFiles', openFiles(64, 128), (p) => p.resources.openFiles, { soft: 64, hard: 128 }],
  ['processes', processes(32, 64), (p) => p.resources.processes, { soft: 32, hard: 64 }],
  ['maxFileSize', maxFileSize(100), (p) => p.resources.maxFileSizeMiB, 100],
  ['denySyscalls', denySyscalls('ptrace', 'bpf'), (p) => p.syscalls.extraDeny, ['ptrace', 'bpf']],
  ['logSyscallsOnly', logSyscallsOnly(), (p) => p.syscalls.logOnly, true],
  ['timeout', timeout(30_000), (p) => p.timeouts.runMs, 30_000],
];

describe('combinators', () => {
  for (const [name, change, read, expected] of table) {
    it(`${name} sets its field, returns a new frozen policy and leaves the input alone`, () => {
      const before = structuredClone(D);
      const after = change(D);
      assert.deepEqual(read(after), expected);
      assert.notEqual(after, D);
      assert.ok(isDeeplyFrozen(after));
      assert.deepEqual(D, before);
    });
  }

  it('list combinators append and skip values already there; the others replace', () => {
    const policy = buildPolicy(readOnly('/a', '/b'), readOnly('/b', '/c'), memory(100), memory(200), setEnv('A', '1'), setEnv('B', '2'));
    assert.deepEqual(policy.filesystem.readOnly, ['/a', '/b', '/c']);
    assert.equal(policy.resources.memoryMiB, 200);
    assert.deepEqual(policy.environment.set, { A: '1', B: '2' });
  });

  it('compose applies left to right, and buildPolicy starts from DEFAULT_POLICY', () => {
    const offline = compose(noNetwork(), memory(512));
    const policy = buildPolicy(hostNetwork(), offline, named('x', 'y'));
    assert.equal(policy.network.mode, 'none');
    assert.equal(policy.resources.memoryMiB, 512);
    assert.deepEqual(buildPolicy(), D);
    assert.equal(compose()(D), D);
  });

  it('refuses invalid values with the validator\'s error, naming the call', () => {
    const cases: [() => unknown, string][] = [
      [() => memory(-1), 'memory(-1): resources.memoryMiB: must be an integer from 16 to 1073741824, got -1'],
      [() => memory(Number.POSITIVE_INFINITY), 'memory(Infinity): resources.memoryMiB: must be an integer from 16 to 1073741824, got Infinity'],
      [() => cpus(0), 'cpus(0): resources.cpus: must be a number > 0 and ≤ 8192, got 0'],
      [() => readOnly('/ok', 'src'), 'readOnly("/ok", "src"): filesystem.readOnly[1]: must be a path (absolute, or starting with ~ or .), got "src"'],
      [() => setEnv('BAD-NAME', 'x'), 'setEnv("BAD-NAME", "x"): environment.set["BAD-NAME"]: must be a variable name (letters, digits and _, not starting with a digit), got "BAD-NAME"'],
      [() => openFiles(4096, 1024), 'openFiles(4096, 1024): resources.openFiles: soft (4096) must not exceed hard (1024)'],
      [() => network('wifi' as 'none'), 'network("wifi"): network.mode: must be one of "none", "allowlist", "host", got "wifi"'],
      [() => hostname('no spaces'), 'hostname("no spaces"): identity.hostname: must be a hostname (letters, digits, - and dots, at most 64), got "no spaces"'],
      [() => timeout(-1), 'timeout(-1): timeouts.runMs: must be an integer from 0 to 2147483647, got -1'],
      [() => denySyscalls('Ptrace'), 'denySyscalls("Ptrace"): syscalls.extraDeny[0]: must be a syscall name (lower case, like ptrace), got "Ptrace"'],
      [() => named('', 'x'), 'named("", "x"): name: must be a short name (letters, digits, . _ -, at most 64), got ""'],
    ];
    for (const [call, message] of cases) assert.equal(brigErrorFrom(call, 'BRIG_POLICY_INVALID').message, message);
  });

  it('asking for destinations or a provider turns the proxy on; host mode is never narrowed silently', () => {
    const policy = buildPolicy(allowHosts('registry.npmjs.org', '*.github.com:443'), denyHosts('evil.github.com'), llm('anthropic'), llmBudget({ tokens: 5000 }));
    assert.deepEqual(policy.network, {
      mode: 'allowlist',
      allow: ['registry.npmjs.org', '*.github.com:443'],
      deny: ['evil.github.com'],
      llm: ['anthropic'],
      budget: { requests: 0, tokens: 5000 },
      publish: 'loopback',
    });
    const error = brigErrorFrom(() => buildPolicy(hostNetwork(), allowHosts('example.com')), 'BRIG_POLICY_INVALID');
    assert.match(error.message, /network\.allow: only applies with mode "allowlist" \(mode is "host"\)/);
    assert.match(brigErrorFrom(() => allowHosts('not a host'), 'BRIG_POLICY_INVALID').message, /network\.allow\[0\]: must be a destination/);
    assert.match(brigErrorFrom(() => llmBudget({ requests: -1 }), 'BRIG_POLICY_INVALID').message, /network\.budget\.requests: must be an integer ≥ 0/);
  });
});
