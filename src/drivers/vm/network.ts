import type { MountStep, SandboxPlan } from '../plan/index.ts';
import type { ChannelRecord } from './channel.ts';

/**
 * network.mode host in a VM: the one case it gets a network device, a
 * virtio-net on QEMU's user network (slirp). The guest reaches what the host
 * reaches, through QEMU's own sockets on the host (so as nobody, in the
 * sandbox's cgroups); 10.0.2.2 is the host's loopback, as the jail's host
 * mode shares it. Unfiltered, as host mode is on every tier: the policy
 * asked for it.
 */

/** QEMU's user network: the guest's address, its netmask, the gateway, and the DNS that forwards to the host's resolver. */
const GUEST = { address: '10.0.2.15', netmask: '255.255.255.0', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

export function hasNetworkDevice(plan: SandboxPlan): boolean {
  return plan.network.mode === 'host';
}

/** The init's record: load the device's modules, configure eth0 and the default route. */
export function networkRecords(plan: SandboxPlan): ChannelRecord[] {
  return hasNetworkDevice(plan) ? [['net', GUEST.address, GUEST.netmask, GUEST.gateway]] : [];
}

/** The view's resolver: QEMU's, which asks the host's (a host resolver on its own loopback is not the guest's). */
export function networkViewMounts(plan: SandboxPlan): MountStep[] {
  return hasNetworkDevice(plan) ? [{ kind: 'file', target: '/etc/resolv.conf', data: `nameserver ${GUEST.dns}\n`, mode: 0o644 }] : [];
}
