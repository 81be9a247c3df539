/**
 * drivers/: the isolation tiers behind one contract (driver.ts). The plan
 * (plan/) is computed once from a Policy; each tier's folder renders and runs
 * it; the registry (registry.ts) finds a tier's driver by name.
 */
export type { Driver, Endpoint, Liveness, RunEnd, RunIo, RunStdio, SandboxHandle, SandboxImage, SandboxSpec, SandboxUsage, TierStatus } from './driver.ts';
export { DEFAULT_TIER, driverFor, tierNames, tierStatuses, usableDriver } from './registry.ts';
export { IMAGE_ID_COUNT, imageIdBase, findExecutable, planSandbox } from './plan/index.ts';
export type { HostContext, ImageRoot, PlanOptions, SandboxPlan } from './plan/index.ts';
export { envdHealthy, linksOnTheWay } from './host/index.ts';
export { prepareImageRoot } from './jail/index.ts';
// Where every daemon sandbox's envd runtime (Node, its libraries) is inside, and how to run that Node: the jobs' TypeScript runs on it.
export { ENVD_INSIDE, programRuntime } from './envd-runtime/index.ts';
