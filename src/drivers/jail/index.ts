/**
 * drivers/jail: the namespace tier. A Policy becomes a plan (bubblewrap argv,
 * seccomp program, cgroup limits, rlimits), and a plan becomes a running jail.
 * See docs/jail.md for every step and why.
 */
export { FD, findExecutable, planJail } from './plan.ts';
export type { HostContext, JailPlan, JailPlanOptions } from './plan.ts';
export { runJail } from './launch.ts';
export type { JailEnd, RunJailOptions } from './launch.ts';
export { sweepLeftovers, recordsDir } from './records.ts';
export { jailDriver } from './sandbox.ts';
export { linksOnTheWay } from './sources.ts';
