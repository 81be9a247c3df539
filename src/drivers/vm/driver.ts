import type { Driver } from '../driver.ts';
import { describeVm } from './describe.ts';
import { runVm } from './run.ts';
import { vmStatus } from './status.ts';
import { prepareVm } from './prepare.ts';
import { bootVm, stopVm, vmLiveness, vmUsage, vmWatchMemory, vmWhyGone } from './sandbox.ts';

export const vmDriver: Driver = {
  name: 'vm',
  summary: 'a microVM (QEMU) with a kernel of its own: the host kernel is behind a hypervisor; slowest to start, on TCG many times slower',
  mapsIds: false,
  status: vmStatus,
  describe: describeVm,
  prepare: prepareVm,
  run: runVm,
  boot: bootVm,
  liveness: vmLiveness,
  whyGone: vmWhyGone,
  usage: vmUsage,
  watchMemory: vmWatchMemory,
  stop: stopVm,
};
