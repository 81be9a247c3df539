/**
 * drivers/host: what every tier that runs as processes on this host shares
 * (the jail, gVisor, the VM's QEMU): cgroups for the limits and the kill,
 * records that let a later brig clean up after one killed mid-run, the
 * memory guard, bind sources opened without following links, and the
 * staging wrapper (a private mount namespace where an image's overlay is
 * mounted and bind sources are staged as checked: gVisor's runsc, the VM's
 * virtiofsd).
 */
export { cgroupPids, createCgroup, endSandboxCgroup, killCgroup, outOfMemory, planCgroup, removeCgroup, spawnInside } from './cgroup.ts';
export type { CgroupPlan } from './cgroup.ts';
export { processLiveness, processStart, recordsDir, removeRecord, statFields, sweepLeftovers, writeRecord } from './records.ts';
export { guardMemory } from './memory.ts';
export type { MemoryGuard } from './memory.ts';
export { checkSource, fdTable, linksOnTheWay, openPlanFds, openSource } from './sources.ts';
export type { PlanFd } from './sources.ts';
export { cgroupLiveness, cgroupUsage, envdHealthy, sandboxLiveness } from './usage.ts';
export { prepareUpper } from './image-upper.ts';
export { watchWholeSandboxOom } from './whole-oom.ts';
export { callerOutput, readCallerInput } from './caller-io.ts';
export { dieWithParent, tierRunDir } from './lifetime.ts';
export { canStage, sourceIdentities, stagedArgv, stagePoint } from './stage.ts';
export type { StageFold } from './stage.ts';
