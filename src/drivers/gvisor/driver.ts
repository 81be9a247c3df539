import type { Driver } from '../driver.ts';
import { describeGvisor } from './describe.ts';
import { runGvisor } from './run.ts';
import { gvisorStatus } from './runsc.ts';
import { bootGvisor, gvisorLiveness, gvisorUsage, gvisorWatchMemory, stopGvisor } from './sandbox.ts';

export const gvisorDriver: Driver = {
  name: 'gvisor',
  summary: 'gVisor (runsc): the sandbox talks to a kernel in user space (the Sentry), not to the host kernel; slower to start, a kernel bug is no longer a way out',
  mapsIds: false,
  status: gvisorStatus,
  describe: describeGvisor,
  run: runGvisor,
  boot: bootGvisor,
  liveness: gvisorLiveness,
  usage: gvisorUsage,
  watchMemory: gvisorWatchMemory,
  stop: stopGvisor,
};
