/**
 * drivers/gvisor: the gVisor tier. A SandboxPlan becomes an OCI bundle
 * (oci.ts, bundle.ts) that runsc runs: the sandbox's syscalls go to gVisor's
 * Sentry, a kernel in user space, not to the host's. See docs/tiers.md.
 */
export { gvisorDriver } from './driver.ts';
