import { BrigError } from '../../protocol/index.ts';
import type { ChannelRecord } from './channel.ts';

/**
 * Telling a hung guest from a quiet one. QEMU alive says nothing of the
 * guest: a kernel stuck in a deadlock, or a guest the host never schedules,
 * keeps QEMU's process up and the sandbox listed as running forever. So the
 * init sends `alive` on brig.ctl every second (record `heartbeat`), from its
 * own loop as pid 1, whatever the command does; the host side of the
 * channel (run.ts in the foreground, the gate for a daemon sandbox) ends
 * the VM when none comes for too long, and says so.
 */

export const HEARTBEAT_MS = 1000;
/** Until the first beat: the guest boots, loads its modules and finds its ports (about 1.5 s on TCG, far more on a loaded host). */
const BOOT_ALLOWANCE_MS = 120_000;
const DEFAULT_SILENCE_S = 30;
const SILENCE_LIMITS_S = [2, 3600] as const;

export function heartbeatRecord(): ChannelRecord {
  return ['heartbeat', String(HEARTBEAT_MS)];
}

/** How long a booted guest may stay silent: BRIG_VM_HUNG_AFTER seconds, 30 without. */
export function silenceAllowedMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.BRIG_VM_HUNG_AFTER;
  if (text === undefined || text === '') return DEFAULT_SILENCE_S * 1000;
  const seconds = /^\d{1,4}$/.test(text) ? Number(text) : NaN;
  if (!(seconds >= SILENCE_LIMITS_S[0] && seconds <= SILENCE_LIMITS_S[1])) {
    throw new BrigError('BRIG_USAGE', `BRIG_VM_HUNG_AFTER=${JSON.stringify(text.slice(0, 20))} is not a number of seconds from ${SILENCE_LIMITS_S[0]} to ${SILENCE_LIMITS_S[1]}`, `unset it for ${DEFAULT_SILENCE_S} s, or give whole seconds`);
  }
  return seconds * 1000;
}

/** Calls onHung once, with what to tell the user, when the guest is silent too long; `heard` on every beat. */
export class GuestWatchdog {
  private timer: NodeJS.Timeout;
  private booted = false;
  /** What onHung was told, once it fired. */
  hung: string | null = null;

  constructor(
    private readonly silenceMs: number,
    private readonly onHung: (message: string) => void,
  ) {
    this.timer = this.arm(Math.max(BOOT_ALLOWANCE_MS, silenceMs));
  }

  heard(): void {
    if (this.hung !== null) return;
    this.booted = true;
    clearTimeout(this.timer);
    this.timer = this.arm(this.silenceMs);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private arm(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.hung = this.booted
        ? `the VM hung: its init gave no sign of life for ${ms / 1000} s (its kernel is stuck, or the host starved it), and it was killed`
        : `the VM hung while booting: no sign of its init within ${ms / 1000} s, and it was killed`;
      this.onHung(this.hung);
    }, ms);
    timer.unref();
    return timer;
  }
}

export const HUNG_HINT = "the guest console's last lines say where it stopped (BRIG_VM_DEBUG=1 shows the whole boot); on a slow or overloaded host raise BRIG_VM_HUNG_AFTER (seconds)";

export function hungError(message: string): BrigError {
  return new BrigError('BRIG_VM_HUNG', message, HUNG_HINT);
}
