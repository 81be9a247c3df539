/**
 * A brig stand-in for the SIGKILL test: runs `sleep 600` under gVisor in the
 * workspace named by argv[2], prints the plan's id and cgroup once the
 * command started, and waits to be killed.
 */
import { gvisorDriver } from '../../../src/drivers/gvisor/index.ts';
import { fixturePlan } from './plan-fixture.ts';

const plan = fixturePlan(process.argv[2] ?? '/tmp', ['sleep', '600']);
void gvisorDriver.run(plan, {
  stdio: ['ignore', 'ignore', 'ignore'],
  started: () => console.log(JSON.stringify({ id: plan.id, cgroup: plan.limits.cgroup.dirs })),
});
