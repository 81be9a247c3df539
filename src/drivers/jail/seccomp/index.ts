/**
 * seccomp for the jail tier: a classic BPF filter brig assembles itself (no
 * libseccomp, no prebuilt binary) and hands to bwrap on a file descriptor
 * (`--seccomp FD`). bwrap enforces it; brig compiles it. docs/seccomp.md
 * describes the checks in order, where the lists come from and how to verify
 * them.
 */
export { hostSeccompArch } from './arch.ts';
export { compileSeccomp } from './compile.ts';
export { disassemble } from './disassemble.ts';
export { evaluateSeccomp } from './evaluate.ts';
export type { CompiledSeccomp, SeccompArch, SeccompOptions } from './types.ts';
