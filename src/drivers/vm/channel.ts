import { BrigError } from '../../protocol/index.ts';

/**
 * The records brig and the guest's init (native/spawn/vm-init.c) exchange on
 * the `brig.ctl` virtio-serial port: a decimal field count, NUL, then that
 * many NUL-terminated strings, the first naming the record. Host to guest:
 * the sandbox's config (root, hold, mount, hostname, oom, pids, uid, gid,
 * groups, own, cwd, env, jail, seccomp, egress, net, tty, heartbeat, argv,
 * rlimit, end), then `eof N` (stdin ended after N bytes), `signal N`,
 * `winsize COLS ROWS` and `poweroff`. Guest to host: `alive` every second
 * (heartbeat.ts), then `exit CODE STDOUT_BYTES STDERR_BYTES` or `error MESSAGE`.
 *
 * Each port is its own queue, and a port's write returns once the data is
 * queued in the guest, not once QEMU has taken it: so `eof` carries the
 * count of stdin bytes, and with `hold` the exit record carries the counts
 * of output bytes, and the guest powers off only when brig, having read them
 * all, says `poweroff` (else the last output, even the exit record, was lost
 * now and then).
 */
export type ChannelRecord = [type: string, ...fields: string[]];

/** The most fields and bytes one record may carry: a guest's record is hostile input. */
const MAX_FIELDS = 4096;
const MAX_RECORD_BYTES = 1 << 20;

export function encodeRecord(record: ChannelRecord): Buffer {
  for (const field of record) {
    if (field.includes('\0')) throw new BrigError('BRIG_POLICY_INVALID', `a value sent to the VM holds a NUL byte: ${JSON.stringify(field.slice(0, 60))}`, 'arguments, environment values and paths cannot contain NUL');
  }
  return Buffer.from(`${record.length}\0${record.map((field) => `${field}\0`).join('')}`, 'utf8');
}

/** Splits a byte stream into records; throws on anything malformed (the guest is not trusted). */
export class RecordReader {
  private pending = Buffer.alloc(0);

  push(chunk: Buffer): ChannelRecord[] {
    this.pending = Buffer.concat([this.pending, chunk]);
    if (this.pending.length > MAX_RECORD_BYTES) throw malformed('a record longer than 1 MiB');
    const records: ChannelRecord[] = [];
    for (;;) {
      const fields = this.take();
      if (!fields) return records;
      records.push(fields);
    }
  }

  private take(): ChannelRecord | null {
    const head = this.pending.indexOf(0);
    if (head < 0) return null;
    const count = this.pending.subarray(0, head).toString('latin1');
    if (!/^[1-9]\d{0,4}$/.test(count) || Number(count) > MAX_FIELDS) throw malformed(`a field count of ${JSON.stringify(count.slice(0, 12))}`);
    const fields: string[] = [];
    let at = head + 1;
    for (let index = 0; index < Number(count); index++) {
      const end = this.pending.indexOf(0, at);
      if (end < 0) return null;
      fields.push(this.pending.subarray(at, end).toString('utf8'));
      at = end + 1;
    }
    this.pending = this.pending.subarray(at);
    return fields as ChannelRecord;
  }
}

function malformed(what: string): BrigError {
  return new BrigError('BRIG_VM_PROTOCOL', `the VM's init sent ${what}`, 'the guest broke the protocol: BRIG_VM_DEBUG=1 shows its console on stderr');
}
