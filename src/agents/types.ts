import type { LlmProvider, PolicyInput } from '../policy/index.ts';

/**
 * An agent profile: how to run one agent CLI in a jail (seed 002's
 * makeJailedAgent). A profile is a policy plus what it takes to find and
 * start the CLI; `brig agent show NAME` prints the policy it resolves to.
 */
export interface AgentSpec {
  /** What `brig agent NAME` takes: lower-case letters, digits and -. */
  name: string;
  /** Other names it answers to (`claude` for claude-code). */
  aliases?: string[];
  description: string;
  /** The CLI: a command name (looked up on PATH, in ./node_modules/.bin, in global npm installs) or an absolute path. */
  command: string;
  /** The npm package that provides it, for the install hint and for finding a global install. */
  npmPackage?: string;
  /** Paths under the home (`~/.claude`) the agent keeps its config and state in: created in its private home before a run. */
  configPaths: string[];
  /** Model providers it talks to, through brig's LLM gateway. */
  providers: LlmProvider[];
  /** Further destinations its proxy may reach (a package registry…); none by default. */
  allow?: string[];
  /** Destinations its proxy refuses even when allowed (checked first). */
  deny?: string[];
  /** Variables set inside: the switches that point it at the gateway and keep update checks and telemetry off the network. */
  env?: Record<string, string>;
  /** Host variables passed in by name. */
  forwardEnv?: string[];
  /** Host commands brought in (with their libraries), or whole directories. */
  extraTools?: string[];
  extraReadWriteDirs?: string[];
  extraReadOnlyDirs?: string[];
  /**
   * Files written into the agent's home before a run when they do not exist
   * yet (`~/.gemini/settings.json` → content): the settings that point it at
   * the gateway and skip first-run dialogs. `{cwd}` in the content becomes the
   * project directory (JSON-escaped), `{gateway}` the gateway's base URL.
   */
  seedFiles?: Record<string, string>;
  /**
   * JSON files under the home whose fields are set at every run, the rest of
   * the file left as the agent wrote it (objects merged, other values
   * replaced): what must hold in each project, such as Claude Code's trust of
   * the directory it is started in. `{cwd}` in a key or a string becomes the
   * project directory.
   */
  jsonSettings?: Record<string, Record<string, unknown>>;
  /** Arguments for a non-interactive run; `{prompt}` is replaced by the prompt. */
  promptArgs?: string[];
  /**
   * JSON settings merged in (as jsonSettings) where nobody is at a terminal:
   * a daemon sandbox, whose programs start the CLI with their own arguments
   * (`claude -p …` through the SDK). They give it the no-questions mode that
   * promptArgs give a `brig agent -p` run, so both behave alike; interactive
   * `brig agent` runs keep the agent's own prompts.
   */
  unattendedSettings?: Record<string, Record<string, unknown>>;
  /** Arguments always passed first (before the user's). */
  args?: string[];
  /** A base policy the profile starts from (instead of brig's default), as a policy file would give it. */
  base?: PolicyInput;
}
