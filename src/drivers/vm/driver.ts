import { BrigError } from '../../protocol/index.ts';
import type { Driver } from '../driver.ts';
import { describeVm } from './describe.ts';
import { runVm } from './run.ts';
import { vmStatus } from './status.ts';
import { prepareVm } from './prepare.ts';

const notYet = (): never => {
  throw new BrigError('BRIG_VM_UNSUPPORTED', 'the vm tier cannot honour a daemon sandbox yet: it runs `brig run --tier vm` commands only, for now', 'create it on the jail or gvisor tier (--tier jail)');
};

export const vmDriver: Driver = {
  name: 'vm',
  summary: 'a microVM (QEMU) with a kernel of its own: the host kernel is behind a hypervisor; slowest to start, on TCG many times slower',
  mapsIds: false,
  status: vmStatus,
  describe: describeVm,
  prepare: prepareVm,
  run: runVm,
  // Daemon sandboxes come next (envd inside, over the channel): until then no vm handle can exist, and each call says so.
  boot: notYet,
  liveness: notYet,
  usage: notYet,
  watchMemory: notYet,
  // Nothing a refused boot left: there is nothing to stop.
  stop: async () => {},
};
