import { planSandbox, type HostContext, type PlanOptions } from '../../src/drivers/index.ts';
import { renderJail, type JailPlan } from '../../src/drivers/jail/index.ts';
import type { Policy } from '../../src/policy/index.ts';

/** A policy planned and rendered for the jail tier, as `brig run` does it. */
export function planJail(policy: Policy, command: string[], host: HostContext, options: PlanOptions): JailPlan {
  return renderJail(planSandbox(policy, command, host, options), host.uid, host.env.PATH);
}
