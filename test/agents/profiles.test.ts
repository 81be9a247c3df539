import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, type SandboxOpts } from 'e2b';
import { BUILTIN_AGENTS, DEFAULT_AGENT_TOOLS, checkAgent, missingToolsMessage, prepareAgentHome, type AgentSpec } from '../../src/agents/index.ts';
import { isBrigError } from '../../src/protocol/index.ts';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { REPO } from '../helpers/envd.ts';
import { serveDaemon } from '../helpers/daemon.ts';

/**
 * Every built-in profile resolves to the policy it should, found through a
 * fake npm install of its CLI (a global prefix outside the system
 * directories, so the package must be bound in); custom agents from a file;
 * the errors; the seed files; a daemon sandbox created from a profile.
 */

const PLACEHOLDER = 'brig-placeholder-key-the-gateway-sends-the-real-one';

interface Shown {
  agent: AgentSpec;
  cli: { command: string; readOnly: string[]; foundIn: string } | null;
  policy: { name: string; network: { mode: string; llm: string[]; allow: string[] }; filesystem: { home: string; readOnly: string[] }; environment: { set: Record<string, string> } };
}

describe('agent profiles', () => {
  const scratch = tempWorkspace('brig-profiles-');
  const prefix = join(scratch.dir, 'npm-global');
  const state = join(scratch.dir, 'state');
  const project = join(scratch.dir, 'project');
  const env = (extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, ANTHROPIC_API_KEY: '', OPENAI_API_KEY: '', GEMINI_API_KEY: '', GOOGLE_API_KEY: '', PATH: `${prefix}/bin:${process.env.PATH}`, BRIG_STATE_DIR: state, BRIG_AGENTS_FILE: join(scratch.dir, 'none.yaml'), ...extra });

  before(() => {
    mkdirSync(join(prefix, 'bin'), { recursive: true });
    mkdirSync(project);
    writeFileSync(join(scratch.dir, 'none.yaml'), '');
    // An npm global install as npm lays it out: the package under lib/node_modules, a bin symlink to its script.
    for (const spec of BUILTIN_AGENTS) {
      const root = join(prefix, 'lib', 'node_modules', spec.npmPackage ?? spec.name);
      mkdirSync(join(root, 'bin'), { recursive: true });
      writeFileSync(join(root, 'package.json'), JSON.stringify({ name: spec.npmPackage, version: '1.0.0' }));
      writeFileSync(join(root, 'bin', 'cli.js'), `#!/usr/bin/env node\nconsole.log('${spec.name} ' + JSON.stringify(process.argv.slice(2)))\n`);
      chmodSync(join(root, 'bin', 'cli.js'), 0o755);
      symlinkSync(join(root, 'bin', 'cli.js'), join(prefix, 'bin', spec.command));
    }
  });

  after(() => scratch.remove());

  const expected: Record<string, { providers: string[]; switches: string[]; prompt: string[] }> = {
    'claude-code': { providers: ['anthropic'], switches: ['DISABLE_AUTOUPDATER', 'DISABLE_TELEMETRY', 'CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC', 'IS_SANDBOX'], prompt: ['-p', 'hi', '--dangerously-skip-permissions'] },
    opencode: { providers: ['anthropic', 'openai', 'gemini'], switches: ['OPENCODE_DISABLE_AUTOUPDATE', 'OPENCODE_DISABLE_MODELS_FETCH'], prompt: ['run', 'hi'] },
    'gemini-cli': { providers: ['gemini'], switches: ['GEMINI_CLI_TRUST_WORKSPACE'], prompt: ['-p', 'hi', '--yolo'] },
    codex: { providers: ['openai'], switches: ['DO_NOT_TRACK'], prompt: ['exec', '--skip-git-repo-check', '--dangerously-bypass-approvals-and-sandbox', 'hi'] },
    crush: { providers: ['anthropic', 'openai', 'gemini'], switches: ['CRUSH_DISABLE_METRICS', 'CRUSH_DISABLE_PROVIDER_AUTO_UPDATE'], prompt: ['run', '-q', 'hi'] },
  };

  for (const spec of BUILTIN_AGENTS) {
    test(`${spec.name}: the policy it resolves to, and the command it runs`, async () => {
      const want = expected[spec.name];
      assert.ok(want, `no expectation for ${spec.name}`);
      const shown = await runBrig(['agent', 'show', spec.name, '--json'], { cwd: project, env: env() });
      assert.equal(shown.code, 0, shown.stderr);
      const { cli, policy } = JSON.parse(shown.stdout) as Shown;
      const root = join(prefix, 'lib', 'node_modules', spec.npmPackage ?? spec.name);
      assert.equal(cli?.command, join(root, 'bin', 'cli.js'), 'started by its real file, not the bin symlink');
      assert.equal(cli?.foundIn, 'path');
      assert.ok(policy.filesystem.readOnly.includes(join(prefix, 'lib', 'node_modules')), 'its node_modules tree is bound read-only');
      assert.equal(policy.network.mode, 'allowlist');
      assert.deepEqual(policy.network.llm, want.providers);
      assert.deepEqual(policy.network.allow, [], 'nothing but the gateway');
      assert.equal(policy.filesystem.home, join(state, 'agents', spec.name, 'home'), 'a private home of its own');
      for (const name of want.switches) assert.ok(policy.environment.set[name] !== undefined, `${name} is set`);

      const plan = await runBrig(['agent', spec.name, '--dry-run', '--json', '-p', 'hi', '--', '--extra'], { cwd: project, env: env({ ANTHROPIC_API_KEY: 'sk-real', OPENAI_API_KEY: 'sk-real', GEMINI_API_KEY: 'real' }) });
      assert.equal(plan.code, 0, plan.stderr);
      const summary = JSON.parse(plan.stdout) as { command: string[]; environment: Record<string, string> };
      assert.deepEqual(summary.command.slice(summary.command.indexOf(cli?.command ?? '') + 1), [...want.prompt, '--extra']);
      assert.ok(!plan.stdout.includes('sk-real') && !plan.stdout.includes('"real"'), 'no key in the jail');
      for (const provider of want.providers) {
        const keyName = { anthropic: 'ANTHROPIC_API_KEY', openai: 'OPENAI_API_KEY', gemini: 'GEMINI_API_KEY' }[provider] ?? '';
        assert.equal(summary.environment[keyName], PLACEHOLDER);
      }
    });
  }

  test('the same CLI runs jailed, its package bound in from outside the system directories', async () => {
    const result = await runBrig(['agent', 'opencode', '-p', 'hello there'], { cwd: project, env: env() });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'opencode ["run","hello there"]\n');
    assert.match(result.stderr, /brig: no key for anthropic, openai, gemini: set ANTHROPIC_API_KEY or OPENAI_API_KEY or GEMINI_API_KEY in your environment/);
    assert.ok(existsSync(join(state, 'agents', 'opencode', 'home', '.config', 'opencode')), 'its config directory was made in its private home');
  });

  test('custom agents from a file; the errors say what and how', async () => {
    const file = join(scratch.dir, 'agents.yaml');
    writeFileSync(
      file,
      ['my-agent:', '  command: opencode', '  providers: [openai]', '  allow: [registry.npmjs.org]', '  deny: [evil.npmjs.org]', '  env: { MY_SWITCH: "1" }', '  promptArgs: [ask, "{prompt}"]', '  base:', '    resources: { memoryMiB: 4096 }', ''].join('\n'),
    );
    const listed = await runBrig(['agent', 'ls'], { cwd: project, env: env({ BRIG_AGENTS_FILE: file }) });
    assert.match(listed.stdout, /^my-agent {2,}openai {2,}\S+opencode-ai\/bin\/cli\.js \(path\)$/m);
    const ran = await runBrig(['agent', 'my-agent', '-p', 'go', '--dry-run', '--json'], { cwd: project, env: env({ BRIG_AGENTS_FILE: file }) });
    const plan = JSON.parse(ran.stdout) as { command: string[]; environment: Record<string, string>; limits: { memoryMiB: number }; network: { allow: string[]; deny: string[] } };
    assert.deepEqual(plan.command.slice(-2), ['ask', 'go']);
    assert.deepEqual([plan.network.allow, plan.network.deny], [['registry.npmjs.org'], ['evil.npmjs.org']]);
    assert.equal(plan.environment.MY_SWITCH, '1');
    assert.equal(plan.limits.memoryMiB, 4096);

    // The same from code: a module's default export.
    const module = join(scratch.dir, 'agents.mjs');
    writeFileSync(module, "const base = { command: 'opencode', providers: ['gemini'] };\nexport default { 'coded-a': { ...base }, 'coded-b': { ...base, providers: ['openai'] } };\n");
    const coded = await runBrig(['agent', 'ls', '--json'], { cwd: project, env: env({ BRIG_AGENTS_FILE: module }) });
    assert.equal(coded.code, 0, coded.stderr);
    assert.deepEqual(
      (JSON.parse(coded.stdout) as Array<{ name: string; providers: string[] }>).filter((row) => row.name.startsWith('coded-')).map((row) => [row.name, row.providers]),
      [['coded-a', ['gemini']], ['coded-b', ['openai']]],
    );

    writeFileSync(file, 'bad-agent:\n  command: x\n  providers: [mistral]\n  extraReadWriteDirs: [~/../etc]\n  colour: blue\n');
    const invalid = await runBrig(['agent', 'ls'], { cwd: project, env: env({ BRIG_AGENTS_FILE: file }) });
    assert.equal(invalid.code, 125);
    assert.match(invalid.stderr, /agent bad-agent: .*colour: unknown field.*providers: must be a list of providers.*extraReadWriteDirs/s);
    assert.match(invalid.stderr, /BRIG_AGENT_INVALID/);

    const unknown = await runBrig(['agent', 'nosuch'], { cwd: project, env: env() });
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /no agent named 'nosuch' \[BRIG_AGENT_UNKNOWN\]\n {2}hint: known: claude-code \(claude\), opencode/);

    const missing = await runBrig(['agent', 'codex', '-p', 'x'], { cwd: project, env: { ...env(), PATH: '/usr/bin:/bin' } });
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /BRIG_AGENT_NOT_INSTALLED\]\n {2}hint: install it: npm install -g @openai\/codex/);
  });

  test('defineAgent checks as the file does', () => {
    assert.throws(
      () => checkAgent('Bad Name', { command: 'x' }, 'defineAgent'),
      (error: unknown) => isBrigError(error) && error.code === 'BRIG_AGENT_INVALID' && /name: must be lower-case/.test(error.message),
    );
  });

  test('seed files are written where nothing is yet; JSON settings are merged into what the agent wrote, at every run', () => {
    const home = join(scratch.dir, 'seed-home');
    const claude = BUILTIN_AGENTS.find((spec) => spec.name === 'claude-code') as AgentSpec;
    prepareAgentHome(claude, home, { cwd: '/work/"quoted"', owner: null });
    const seeded = JSON.parse(readFileSync(join(home, '.claude.json'), 'utf8'));
    assert.equal(seeded.projects['/work/"quoted"'].hasTrustDialogAccepted, true);
    assert.deepEqual(seeded.customApiKeyResponses.approved, [PLACEHOLDER.slice(-20)]);
    // The agent writes its own fields; the next run, in another project, keeps them and trusts that project too.
    writeFileSync(join(home, '.claude.json'), JSON.stringify({ ...seeded, numStartups: 3, projects: { ...seeded.projects, '/work/"quoted"': { hasTrustDialogAccepted: true, history: ['x'] } } }));
    writeFileSync(join(home, '.claude', 'settings.json'), '{"mine":true}');
    prepareAgentHome(claude, home, { cwd: '/elsewhere', owner: null });
    const merged = JSON.parse(readFileSync(join(home, '.claude.json'), 'utf8'));
    assert.equal(merged.numStartups, 3);
    assert.deepEqual(merged.projects['/work/"quoted"'].history, ['x']);
    assert.equal(merged.projects['/elsewhere'].hasTrustDialogAccepted, true);
    assert.equal(readFileSync(join(home, '.claude', 'settings.json'), 'utf8'), '{"mine":true}', 'a seed file the agent changed is its own');
    const codex = BUILTIN_AGENTS.find((spec) => spec.name === 'codex') as AgentSpec;
    prepareAgentHome(codex, home, { cwd: '/p', owner: null });
    assert.match(readFileSync(join(home, '.codex', 'config.toml'), 'utf8'), /base_url = "http:\/\/127\.0\.0\.1:3128\/openai\/v1"/);
  });

  test('default tools the host lacks are named, with the packages that bring them', () => {
    const message = missingToolsMessage('/nonexistent');
    assert.match(message ?? '', /missing on this host .*: bash, curl, wget, jq, git, rg,/);
    assert.match(message ?? '', /apt-get install bash curl wget jq git ripgrep grep gawk procps findutils/);
    // A host with every tool but jq: exactly jq is named.
    const bin = join(scratch.dir, 'tools-bin');
    mkdirSync(bin);
    for (const tool of DEFAULT_AGENT_TOOLS) if (tool !== 'jq') symlinkSync('/bin/true', join(bin, tool));
    assert.equal(missingToolsMessage(bin), "brig: the agent's usual tools missing on this host (not in the jail either): jq; install them with: sudo apt-get install jq");
  });

  test('a daemon sandbox from a profile: E2B template name, the CLI inside, the key outside', async () => {
    const daemonState = tempWorkspace('brig-profile-daemon-');
    const daemon = await serveDaemon(daemonState.dir, { apiKey: 'k', env: { PATH: `${REPO}/node_modules/.bin:${process.env.PATH}`, ANTHROPIC_API_KEY: 'sk-daemon-secret' } });
    try {
      const opts = { apiKey: 'k', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
      const sandbox = await Sandbox.create('claude', opts);
      const result = await sandbox.commands.run('claude --version; echo "$ANTHROPIC_API_KEY"; tr -d " \\n" < ~/.claude/settings.json; echo; env | grep -c sk-daemon-secret || true');
      const [version, key, settings, leaks] = result.stdout.trim().split('\n');
      assert.match(version ?? '', /^2\.1\.112 \(Claude Code\)$/);
      assert.equal(key, PLACEHOLDER);
      // No one is at a terminal in a daemon sandbox: `claude -p` gets the no-questions mode from its settings.
      assert.equal(settings, '{"skipDangerousModePermissionPrompt":true,"permissions":{"defaultMode":"bypassPermissions"}}');
      assert.equal(leaks, '0');
      assert.equal((await sandbox.getInfo()).templateId, 'claude');
      await sandbox.kill();
      await assert.rejects(Sandbox.create('no-such-profile', opts), /unknown template 'no-such-profile'/);
    } finally {
      const opts = { apiKey: 'k', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
      for (const info of await Sandbox.list(opts).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts).catch(() => false);
      await daemon.stop();
      daemonState.remove();
    }
  });
});
