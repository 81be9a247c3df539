/**
 * policy/: the one description of a jail. The Policy type and its defaults,
 * the schema every input is checked against, the merge rule, the file loader,
 * path resolution, the combinators and the CLI unit parsers. Everything else in
 * this folder is private.
 */
export { DEFAULT_POLICY } from './defaults.ts';
export { POLICY_SCHEMA } from './schema.ts';
export { validatePolicyInput, validatePolicy } from './validate.ts';
export { applyPolicyInput } from './merge.ts';
export { loadPolicyFile, readConfigFile } from './load.ts';
export { resolvePolicy } from './resolve.ts';
export {
  allowHosts,
  buildPolicy,
  compose,
  cpus,
  denyHosts,
  denySyscalls,
  forwardEnv,
  hide,
  hostNetwork,
  hostname,
  imageEnvironment,
  keptHome,
  llm,
  llmBudget,
  logSyscallsOnly,
  maxFileSize,
  memory,
  onOutOfMemory,
  named,
  network,
  onTier,
  noNetwork,
  openFiles,
  pids,
  processes,
  readOnly,
  readWrite,
  runAs,
  setEnv,
  timeout,
  tmpfs,
  tmpfsSize,
  tools,
  user,
  workspace,
  workspaceAt,
} from './combinators.ts';
export { parseDurationMs, parseSizeMiB } from './units.ts';

export type {
  EnvironmentPolicy,
  FilesystemPolicy,
  IdentityPolicy,
  LlmBudget,
  LlmProvider,
  NetworkMode,
  NetworkPolicy,
  PublishScope,
  Policy,
  PolicyInput,
  ResourcesPolicy,
  OutOfMemoryAction,
  SoftHard,
  SyscallPolicy,
  TimeoutPolicy,
} from './types.ts';
export type { PolicyChange } from './combinators.ts';
export type { ResolveContext } from './resolve.ts';
