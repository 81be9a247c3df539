/**
 * What each sandbox's commands are doing, as far as the daemon can see it:
 * how many run (started through the gateway, not yet ended) and when one
 * last wrote output. With the CPU the sandbox uses, this is how a hung
 * sandbox is told (timeouts.hungMs): commands running, no output, no CPU.
 */
export class ActivityBoard {
  private readonly sandboxes = new Map<string, { running: number; lastOutputMs: number }>();

  started(sandbox: string): void {
    const entry = this.entry(sandbox);
    entry.running++;
    entry.lastOutputMs = Date.now();
  }

  ended(sandbox: string): void {
    const entry = this.sandboxes.get(sandbox);
    if (!entry) return;
    entry.running = Math.max(0, entry.running - 1);
    if (entry.running === 0) this.sandboxes.delete(sandbox);
  }

  output(sandbox: string): void {
    const entry = this.sandboxes.get(sandbox);
    if (entry) entry.lastOutputMs = Date.now();
  }

  /** Commands running in it, and when they last wrote (or started); null when none run. */
  of(sandbox: string): { running: number; lastOutputMs: number } | null {
    return this.sandboxes.get(sandbox) ?? null;
  }

  forget(sandbox: string): void {
    this.sandboxes.delete(sandbox);
  }

  private entry(sandbox: string): { running: number; lastOutputMs: number } {
    let entry = this.sandboxes.get(sandbox);
    if (!entry) {
      entry = { running: 0, lastOutputMs: Date.now() };
      this.sandboxes.set(sandbox, entry);
    }
    return entry;
  }
}
