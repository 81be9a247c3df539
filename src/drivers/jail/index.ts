/**
 * drivers/jail: the namespace tier. A sandbox plan (drivers/plan) becomes
 * bubblewrap argv, a seccomp program brig compiles, cgroup limits and
 * rlimits (bwrap.ts), and a running jail: in the foreground (launch.ts) or
 * as a daemon sandbox with envd inside (sandbox.ts). See docs/jail.md.
 */
export { FD, renderJail } from './bwrap.ts';
export type { JailPlan } from './bwrap.ts';
export { jailDriver } from './sandbox.ts';
export { startBwrap } from './launch.ts';
export { renderHostView } from './host-view.ts';
export { compileSeccomp } from './seccomp/index.ts';
export type { HostViewOptions } from './host-view.ts';
export { prepareImageRoot } from './image-root.ts';
