import type { AgentSpec } from './types.ts';

/**
 * The built-in profiles. Each says where its CLI comes from, where it keeps
 * its config, which provider it talks to, the switches that keep update
 * checks, telemetry and error reporting from trying the network (the jail
 * would refuse them anyway; the switches make the agent not wait or warn),
 * and how to run it with a prompt and no questions: the jail is what keeps
 * it in bounds, so its own permission prompts are turned off.
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
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      // The jail is the sandbox: it lets --dangerously-skip-permissions run as root inside.
      IS_SANDBOX: '1',
    },
    promptArgs: ['-p', '{prompt}', '--dangerously-skip-permissions'],
  },
  {
    name: 'opencode',
    description: 'sst\'s opencode, with Anthropic, OpenAI and Gemini reached through brig\'s LLM gateway.',
    command: 'opencode',
    npmPackage: 'opencode-ai',
    configPaths: ['~/.config/opencode', '~/.local/share/opencode', '~/.local/state/opencode', '~/.cache/opencode'],
    providers: ['anthropic', 'openai', 'gemini'],
    env: { ...QUIET, OPENCODE_DISABLE_AUTOUPDATE: '1', OPENCODE_DISABLE_MODELS_FETCH: '1', OPENCODE_DISABLE_LSP_DOWNLOAD: '1', OPENCODE_DISABLE_DEFAULT_PLUGINS: '1' },
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
    env: { ...QUIET, GEMINI_CLI_NO_RELAUNCH: 'true', GEMINI_TELEMETRY_ENABLED: 'false' },
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
    // Codex's own sandbox (landlock, seccomp) cannot nest inside brig's jail; brig's jail is the sandbox.
    promptArgs: ['exec', '--dangerously-bypass-approvals-and-sandbox', '--skip-git-repo-check', '{prompt}'],
  },
  {
    name: 'crush',
    description: "Charm's Crush, with Anthropic, OpenAI and Gemini reached through brig's LLM gateway.",
    command: 'crush',
    npmPackage: '@charmland/crush',
    configPaths: ['~/.config/crush', '~/.local/share/crush'],
    providers: ['anthropic', 'openai', 'gemini'],
    env: { ...QUIET, CRUSH_DISABLE_METRICS: '1', CRUSH_DISABLE_PROVIDER_AUTO_UPDATE: '1' },
    promptArgs: ['run', '{prompt}'],
  },
];
