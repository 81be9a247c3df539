import { PLACEHOLDER_KEY } from '../egress/index.ts';
import type { AgentSpec } from './types.ts';

/**
 * The built-in profiles. Each says where its CLI comes from, where it keeps
 * its config, which providers it talks to, the switches that keep update
 * checks, telemetry and plugin downloads from trying the network (the jail
 * would refuse them anyway; the switches keep the agent from waiting, warning
 * or failing), the settings its first run would otherwise ask for, and how to
 * run it with a prompt and no questions: the jail is what keeps it in bounds,
 * so its own permission prompts are off. Versions checked: Claude Code
 * 2.1.332, opencode 1.18.33, Gemini CLI 0.61.0, Codex 0.171.0 (each driven
 * through brig against a stand-in model); Crush 0.96.1 from its docs and
 * source, since its npm package downloads the binary from GitHub.
 */

/** Variables many CLIs honour to stay off the network for anything but their work. */
const QUIET = { DO_NOT_TRACK: '1', NO_UPDATE_NOTIFIER: '1' };

export const BUILTIN_AGENTS: readonly AgentSpec[] = [
  {
    name: 'claude-code',
    aliases: ['claude'],
    description: "Anthropic's Claude Code, talking to Anthropic's API through brig's LLM gateway.",
    command: 'claude',
    npmPackage: '@anthropic-ai/claude-code',
    configPaths: ['~/.claude'],
    providers: ['anthropic'],
    env: {
      ...QUIET,
      DISABLE_AUTOUPDATER: '1',
      DISABLE_TELEMETRY: '1',
      DISABLE_ERROR_REPORTING: '1',
      DISABLE_BUG_COMMAND: '1',
      // Feature flags, server URLs, changelog, the connection warm-up.
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      // The plugin marketplace it installs from GitHub at an interactive start.
      CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL: '1',
      // brig's jail is the sandbox: this lets --dangerously-skip-permissions run when the jail's user is root.
      IS_SANDBOX: '1',
    },
    jsonSettings: {
      // Without onboarding done, an interactive first run checks it can reach api.anthropic.com and gives up.
      // The project is trusted: brig's jail is what bounds it, and a daemon sandbox has nobody to answer the
      // dialog. The placeholder key is approved (by its last 20 characters, as Claude Code keeps it) so it does not ask.
      '~/.claude.json': {
        hasCompletedOnboarding: true,
        projects: { '{cwd}': { hasTrustDialogAccepted: true } },
        customApiKeyResponses: { approved: [PLACEHOLDER_KEY.slice(-20)] },
      },
    },
    seedFiles: {
      '~/.claude/settings.json': JSON.stringify({ skipDangerousModePermissionPrompt: true }),
    },
    promptArgs: ['-p', '{prompt}', '--dangerously-skip-permissions'],
    // In a daemon sandbox `claude -p …` comes without the flag (E2B's docs and SDK examples run it so):
    // without this it asks for permission nobody can give, writes nothing and exits 0.
    unattendedSettings: { '~/.claude/settings.json': { permissions: { defaultMode: 'bypassPermissions' } } },
  },
  {
    name: 'opencode',
    description: "sst's opencode, with Anthropic, OpenAI and Gemini reached through brig's LLM gateway.",
    command: 'opencode',
    npmPackage: 'opencode-ai',
    configPaths: ['~/.config/opencode', '~/.local/share/opencode', '~/.local/state/opencode', '~/.cache/opencode'],
    providers: ['anthropic', 'openai', 'gemini'],
    // The base URLs come in OPENCODE_CONFIG_CONTENT (set with the gateway's variables). At every start it also
    // tries to install @opencode-ai/plugin from the npm registry; no switch stops that, the proxy refuses it
    // (a violation in the summary) and opencode carries on.
    env: { ...QUIET, OPENCODE_DISABLE_AUTOUPDATE: '1', OPENCODE_DISABLE_MODELS_FETCH: '1' },
    promptArgs: ['run', '{prompt}'],
  },
  {
    name: 'gemini-cli',
    aliases: ['gemini'],
    description: "Google's Gemini CLI, talking to the Gemini API through brig's LLM gateway.",
    command: 'gemini',
    npmPackage: '@google/gemini-cli',
    configPaths: ['~/.gemini'],
    providers: ['gemini'],
    env: { ...QUIET, GEMINI_CLI_TRUST_WORKSPACE: 'true', GEMINI_CLI_NO_RELAUNCH: 'true' },
    seedFiles: {
      // With a base URL set, a -p run refuses to start unless the auth type is chosen in settings.
      '~/.gemini/settings.json': JSON.stringify({
        security: { auth: { selectedType: 'gemini-api-key' } },
        privacy: { usageStatisticsEnabled: false },
        telemetry: { enabled: false },
        general: { enableAutoUpdate: false, enableAutoUpdateNotification: false },
      }),
    },
    promptArgs: ['-p', '{prompt}', '--yolo'],
  },
  {
    name: 'codex',
    description: "OpenAI's Codex CLI, talking to OpenAI's Responses API through brig's LLM gateway.",
    command: 'codex',
    npmPackage: '@openai/codex',
    configPaths: ['~/.codex'],
    providers: ['openai'],
    env: { ...QUIET },
    seedFiles: {
      // Codex ignores OPENAI_BASE_URL: a provider of its own points it at the gateway, speaking the Responses API.
      '~/.codex/config.toml': [
        'model_provider = "brig"',
        'check_for_update_on_startup = false',
        '',
        '[model_providers.brig]',
        'name = "brig"',
        'base_url = "{gateway}/openai/v1"',
        'env_key = "OPENAI_API_KEY"',
        'wire_api = "responses"',
        '',
        '[analytics]',
        'enabled = false',
        '',
        '[features]',
        'plugins = false',
        '',
      ].join('\n'),
    },
    // Codex's own sandbox (bubblewrap, seccomp) cannot nest inside brig's jail, which is the sandbox.
    promptArgs: ['exec', '--skip-git-repo-check', '--dangerously-bypass-approvals-and-sandbox', '{prompt}'],
  },
  {
    name: 'crush',
    description: "Charm's Crush, with Anthropic, OpenAI and Gemini reached through brig's LLM gateway.",
    command: 'crush',
    npmPackage: '@charmland/crush',
    configPaths: ['~/.config/crush', '~/.local/share/crush', '~/.cache/crush'],
    providers: ['anthropic', 'openai', 'gemini'],
    // Crush's providers read ANTHROPIC_API_ENDPOINT, OPENAI_API_ENDPOINT and GEMINI_API_ENDPOINT (set with the gateway's variables).
    env: { ...QUIET, CRUSH_DISABLE_METRICS: '1', CRUSH_DISABLE_PROVIDER_AUTO_UPDATE: '1' },
    promptArgs: ['run', '-q', '{prompt}'],
  },
];
