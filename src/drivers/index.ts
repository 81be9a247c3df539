/**
 * drivers/: the isolation tiers behind one contract (driver.ts). Each tier's
 * folder offers its Driver; the jail tier also offers `brig run`'s
 * foreground jail (drivers/jail/index.ts).
 */
export type { Driver, Endpoint, Liveness, SandboxHandle, SandboxSpec, SandboxUsage } from './driver.ts';
export { jailDriver } from './jail/index.ts';
