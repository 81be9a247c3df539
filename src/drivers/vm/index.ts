/**
 * drivers/vm: the microVM tier. A sandbox plan becomes a QEMU microvm with
 * Debian's kernel and brig's initramfs (build.ts), the sandbox's files served
 * by virtiofsd from the jail's view of them (jail/host-view.ts), and a
 * channel of virtio-serial ports to the guest's init (channel.ts,
 * native/spawn/vm-init.c). See docs/tiers.md.
 */
export { vmDriver } from './driver.ts';
