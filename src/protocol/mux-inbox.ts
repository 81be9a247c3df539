/**
 * The bytes a stream has received and its reader has not asked for yet. A
 * payload is a view of the transport's chunk, so it is copied (else one byte
 * kept would keep the whole chunk); small ones are packed into shared blocks,
 * so a peer sending one-byte frames costs a byte each, not a Buffer each.
 */
const BLOCK_BYTES = 16 * 1024;

export class Inbox {
  private pieces: Buffer[] = [];
  private block: Buffer | null = null;
  private blockUsed = 0;
  private size = 0;

  get bytes(): number {
    return this.size;
  }

  append(payload: Buffer): void {
    this.size += payload.length;
    if (payload.length >= BLOCK_BYTES / 2) {
      this.seal();
      this.pieces.push(Buffer.from(payload));
      return;
    }
    if (!this.block || this.block.length - this.blockUsed < payload.length) {
      this.seal();
      this.block = Buffer.allocUnsafe(BLOCK_BYTES);
    }
    this.blockUsed += payload.copy(this.block, this.blockUsed);
  }

  /** Everything held, as one Buffer, leaving the inbox empty. */
  takeAll(): Buffer {
    this.seal();
    const all = this.pieces.length === 1 ? (this.pieces[0] as Buffer) : Buffer.concat(this.pieces, this.size);
    this.clear();
    return all;
  }

  clear(): void {
    this.pieces = [];
    this.block = null;
    this.blockUsed = 0;
    this.size = 0;
  }

  private seal(): void {
    if (this.block && this.blockUsed > 0) this.pieces.push(this.block.subarray(0, this.blockUsed));
    this.block = null;
    this.blockUsed = 0;
  }
}
