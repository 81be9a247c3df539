/**
 * drivers/plan: the tier-neutral sandbox plan. A Policy and a command become
 * a SandboxPlan (types.ts) once, with every check a user can fail; each
 * tier's driver renders it (drivers/jail: bubblewrap argv; drivers/gvisor: an
 * OCI bundle). The masks of /proc, /etc and credentials are written here, once.
 */
export { planSandbox, findExecutable } from './plan.ts';
export type { EgressParts, HostContext, PlanOptions } from './plan.ts';
export { within } from './mounts.ts';
export { IMAGE_ID_COUNT, IMAGE_ROOT_CAPS, imageIdBase, imageUser, readLayeredFile } from './image.ts';
export type { ImageUser } from './image.ts';
export { MODE_SETTING_CALLS, SETID_BITS } from './setid.ts';
export { unmappedBindProblem, unmappedOwnershipProblem } from './unmapped.ts';
export type * from './types.ts';
