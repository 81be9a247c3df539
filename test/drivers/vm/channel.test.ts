import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRecord, RecordReader } from '../../../src/drivers/vm/channel.ts';
import { guestConfig } from '../../../src/drivers/vm/guest.ts';
import { describeVm } from '../../../src/drivers/vm/describe.ts';
import { qemuArgv, PORTS } from '../../../src/drivers/vm/qemu.ts';
import { planSandbox } from '../../../src/drivers/index.ts';
import { allowHosts, buildPolicy, network, resolvePolicy, workspace } from '../../../src/policy/index.ts';
import { egressViewMounts } from '../../../src/drivers/vm/egress.ts';

/** The parts of the vm tier that need no VM: the channel's records, what the init is told, QEMU's command line. */
describe('the vm channel', () => {
  test('records round-trip, split anywhere across chunks; values keep spaces, newlines and UTF-8', () => {
    const sent: Array<[string, ...string[]]> = [['argv', 'sh', '-c', 'echo "a b"\nexit 3'], ['env', 'GREETING=héllo'], ['eof'], ['exit', '0']];
    const bytes = Buffer.concat(sent.map((record) => encodeRecord(record)));
    for (const size of [1, 3, 7, bytes.length]) {
      const reader = new RecordReader();
      const got = [];
      for (let at = 0; at < bytes.length; at += size) got.push(...reader.push(bytes.subarray(at, at + size)));
      assert.deepEqual(got, sent, `chunks of ${size}`);
    }
  });

  test("a guest's malformed record is refused, never half-read; a NUL in a value is refused before it is sent", () => {
    for (const bad of ['x\0', '0\0', '-1\0a\0', '99999999\0', '01\0a\0']) assert.throws(() => new RecordReader().push(Buffer.from(bad)), { code: 'BRIG_VM_PROTOCOL' }, JSON.stringify(bad));
    assert.throws(() => new RecordReader().push(Buffer.alloc(2 << 20, 0x31)), { code: 'BRIG_VM_PROTOCOL' });
    assert.throws(() => encodeRecord(['env', 'A=\0']), { code: 'BRIG_POLICY_INVALID' });
  });
});

describe("the vm tier's rendering", () => {
  const host = { uid: 0, gid: 0, home: '/root', cwd: '/root', env: { PATH: '/usr/bin:/bin' } };
  const plan = (...changes: Parameters<typeof buildPolicy>) => planSandbox(resolvePolicy(buildPolicy(workspace(null), ...changes), { cwd: '/root', home: '/root' }), ['sh', '-c', 'exit 3'], host, { tty: false, id: 'vm-render' });

  test("the init is told the root's tag, its own /proc and /dev, the identity, cwd, environment and argv, then end", () => {
    const config = guestConfig(plan());
    assert.deepEqual(config[0], ['root', 'root']);
    assert.deepEqual(config.filter((record) => record[0] === 'mount').map((record) => record[3]), ['/proc', '/dev', '/dev/pts', '/dev/shm']);
    assert.deepEqual(config.find((record) => record[0] === 'argv'), ['argv', 'sh', '-c', 'exit 3']);
    assert.ok(config.some((record) => record[0] === 'env' && record[1] === 'PATH=' + (plan().env.PATH ?? '')));
    assert.deepEqual(config.at(-1), ['end']);
    // uid after gid: the init drops privileges last.
    assert.ok(config.findIndex((record) => record[0] === 'gid') < config.findIndex((record) => record[0] === 'uid'));
  });

  test('allowlist: a guest tmpfs over the egress directory, the socket and its program, the relay before the command; the view gets the bridge and Node', () => {
    const egress = { socketDir: '/tmp/brig-egress-socket-dir', nodeDir: '/tmp/brig-node-dir', relay: '/usr/bin/true' };
    const allowlist = planSandbox(resolvePolicy(buildPolicy(workspace(null), network('allowlist'), allowHosts('example.com')), { cwd: '/root', home: '/root' }), ['sh', '-c', 'exit 3'], host, { tty: false, id: 'vm-egress', egress });
    const config = guestConfig(allowlist);
    const tmpfs = config.find((record) => record[0] === 'mount' && record[3] === '/run/brig/egress');
    assert.equal(tmpfs?.[1], 'tmpfs');
    const record = config.find((entry) => entry[0] === 'egress');
    assert.equal(record?.[1], '/run/brig/egress/egress.sock');
    assert.equal(record?.at(-1), '/run/brig/node/vm-egress.cjs');
    assert.deepEqual(config.find((entry) => entry[0] === 'argv'), ['argv', '/run/brig/relay', '3128=/run/brig/egress/egress.sock', '--', 'sh', '-c', 'exit 3']);
    const targets = egressViewMounts(allowlist).map((step) => step.target);
    for (const target of ['/run/brig/egress', '/run/brig/relay', '/run/brig/node', '/run/brig/vm-node/bin/node']) assert.ok(targets.includes(target), target);
    assert.ok(egressViewMounts(allowlist).every((step) => step.kind === 'bind' && !step.writable), 'all read-only');
    // Without allowlist, none of it.
    assert.equal(guestConfig(plan()).some((entry) => entry[0] === 'egress'), false);
    assert.deepEqual(egressViewMounts(plan()), []);
  });

  test('what the tier does not render yet is refused with BRIG_VM_UNSUPPORTED, not approximated; a terminal is the guest\'s own', () => {
    // network.mode host: the one case with a network device (network.ts); none and allowlist have a loopback of their own.
    const host = guestConfig(plan(network('host')));
    assert.deepEqual(host.find((record) => record[0] === 'net'), ['net', '10.0.2.15', '255.255.255.0', '10.0.2.2']);
    assert.ok(!host.find((record) => record[0] === 'jail')?.includes('--unshare-net'));
    assert.ok(guestConfig(plan()).find((record) => record[0] === 'jail')?.includes('--unshare-net'));
    assert.equal(guestConfig(plan()).some((record) => record[0] === 'net'), false);
    // A terminal needs its size; a daemon sandbox has none (envd's terminals are its own).
    assert.throws(() => guestConfig({ ...plan(), tty: true }), { code: 'BRIG_INTERNAL' });
    assert.throws(() => guestConfig({ ...plan(), tty: true }, 'service', { columns: 80, rows: 24 }), { code: 'BRIG_INTERNAL' });
    const terminal = guestConfig({ ...plan(), tty: true }, 'foreground', { columns: 120, rows: 40 });
    assert.deepEqual(terminal.find((record) => record[0] === 'tty'), ['tty', '120', '40']);
    assert.deepEqual(terminal.find((record) => record[0] === 'argv'), ['argv', '/usr/bin/setsid', '--ctty', 'sh', '-c', 'exit 3']);
    assert.ok(!terminal.find((record) => record[0] === 'jail')?.includes('--new-session'), 'the session keeps its terminal');
    // --dry-run on a terminal shows the size it would pass (it once threw for want of one).
    assert.ok(describeVm({ ...plan(), tty: true }).lines.some((line) => /^init: "tty" "\d+" "\d+"$/.test(line)));
  });

  test("QEMU's command line: a microvm with shared memory for virtiofsd, no network, no disk, the four ports by name", () => {
    const argv = qemuArgv({ qemu: 'q', accel: 'tcg', vmlinuz: 'k', initramfs: 'i', memoryMiB: 512, cpus: 1, fsSocket: '/r/fs.sock', ports: [...PORTS.map((name) => ({ name, end: { socket: `/r/${name}` } })), { name: 'brig.service' as const, end: { appendTo: '/r/log' } }], console: 'null' });
    const line = argv.join(' ');
    assert.match(line, /-M microvm,[^ ]*memory-backend=mem/);
    assert.match(line, /memory-backend-memfd,id=mem,size=512M,share=on/);
    assert.match(line, /-nodefaults/);
    assert.doesNotMatch(line, /netdev|-nic|virtio-net|-drive|virtio-blk/);
    for (const name of PORTS) assert.match(line, new RegExp(`name=${name.replace('.', '\\.')}`));
    assert.match(line, /vhost-user-fs-device,chardev=fs,tag=root/);
    assert.match(line, /-chardev socket,id=port0,path=\/r\/brig\.ctl -device virtserialport,chardev=port0,name=brig\.ctl/);
    assert.match(line, /-chardev file,id=port4,path=\/r\/log,append=on -device virtserialport,chardev=port4,name=brig\.service/);
    assert.match(line, /-chardev null,id=console -serial chardev:console/);
    // Only network.mode host gets a device: a virtio-net on QEMU's user network.
    const withNetwork = qemuArgv({ qemu: 'q', accel: 'tcg', vmlinuz: 'k', initramfs: 'i', memoryMiB: 512, cpus: 1, fsSocket: '/r/fs.sock', ports: [], console: 'null', network: true }).join(' ');
    assert.match(withNetwork, /-netdev user,id=net0 -device virtio-net-device,netdev=net0/);
  });
});
