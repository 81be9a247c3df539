// Type tests: checked by `tsc --noEmit` (tsconfig includes test/), never run.
// Each @ts-expect-error pins something the public types must refuse; if one
// starts compiling, tsc reports the unused directive.
import {
  applyPolicyInput,
  buildPolicy,
  DEFAULT_POLICY,
  memory,
  network,
  type Policy,
  type PolicyChange,
  type PolicyInput,
  readOnly,
  resolvePolicy,
} from '../../src/policy/index.ts';

// What must compile.
export const partial: PolicyInput = { resources: { memoryMiB: 512, openFiles: { soft: 64 } }, filesystem: { workspace: null } };
export const emptyInput: PolicyInput = {};
export const built: Policy = buildPolicy(readOnly('/opt'), memory(512), network('host'));
export const change: PolicyChange = (policy) => applyPolicyInput(policy, { network: { mode: 'none' } });
export const resolved: Policy = resolvePolicy(DEFAULT_POLICY, { cwd: '/w', home: '/h' });

// Network modes are closed, and so are the gateway's providers.
export const allowlist: PolicyInput = { network: { mode: 'allowlist', allow: ['*.npmjs.org'], budget: { tokens: 1000 } } };
// @ts-expect-error 'wifi' is not a NetworkMode
network('wifi');
// @ts-expect-error 'mistral' is not a provider the gateway serves
export const provider: PolicyInput = { network: { llm: ['mistral'] } };

// Units are in names and values are numbers: no "2g" strings in a policy.
// @ts-expect-error memoryMiB is a number of MiB
export const memoryString: PolicyInput = { resources: { memoryMiB: '2g' } };
// @ts-expect-error memory() takes MiB as a number
memory('2g');

// Unknown fields are refused at every level.
// @ts-expect-error no such top-level field
export const unknownTop: PolicyInput = { network: { mode: 'none' }, weaker: true };
// @ts-expect-error no such filesystem field
export const unknownNested: PolicyInput = { filesystem: { readonly: ['/x'] } };

// Lists are lists, environment values are strings, sections are not nullable.
// @ts-expect-error readOnly is a list of paths
export const notAList: PolicyInput = { filesystem: { readOnly: '/x' } };
// @ts-expect-error environment values are strings
export const numericEnv: PolicyInput = { environment: { set: { PORT: 3000 } } };
// @ts-expect-error a section cannot be null
export const nullSection: PolicyInput = { network: null };

// A Policy is frozen in spirit too: its fields are what the type says, complete.
// @ts-expect-error a PolicyInput is not a complete Policy
export const notComplete: Policy = partial;
// @ts-expect-error resolvePolicy needs both cwd and home
resolvePolicy(DEFAULT_POLICY, { cwd: '/w' });
