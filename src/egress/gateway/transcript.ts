/**
 * What a transcript keeps of a body: its first MiB, as text. Bodies stream
 * through the gateway whole; only the record is cut.
 */

export const TRANSCRIPT_BODY_CAP = 1024 * 1024;

export class BodyCapture {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  /** Every byte seen, kept or not. */
  size = 0;

  constructor(private readonly cap = TRANSCRIPT_BODY_CAP) {}

  add(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.kept >= this.cap) return;
    const part = chunk.length <= this.cap - this.kept ? chunk : chunk.subarray(0, this.cap - this.kept);
    this.chunks.push(part);
    this.kept += part.length;
  }

  get truncated(): boolean {
    return this.size > this.kept;
  }

  /**
   * A compressed body is not text: the record says what it was rather than
   * keeping bytes nobody can read (the gateway asks upstream for identity).
   * `encoding` is a Content-Encoding other than identity, or undefined.
   */
  text(encoding: string | undefined): string {
    if (encoding !== undefined) return `[${encoding}-encoded body, ${this.size} bytes, not recorded]`;
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** Every occurrence of a secret, replaced; an empty secret replaces nothing. */
export function scrub(text: string, secret: string): string {
  return secret.length === 0 ? text : text.split(secret).join('[key removed]');
}
