/**
 * The Connect protocol's JSON form, as far as envd and its clients use it:
 * unary calls are plain JSON bodies; streams are envelopes of 1 flag byte,
 * a 4-byte big-endian length and a JSON message, the last one flagged
 * END_STREAM and carrying `{}` or `{"error": …}`. See docs/envd.md.
 */

/** Connect's error codes, with the HTTP status each maps to for unary calls. */
export const CONNECT_CODES = {
  canceled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
} as const;

export type ConnectCode = keyof typeof CONNECT_CODES;

/** An error to send to a Connect client: a code its SDK maps to an error class, and a message. */
export class ConnectError extends Error {
  readonly code: ConnectCode;

  constructor(code: ConnectCode, message: string) {
    super(message);
    this.name = 'ConnectError';
    this.code = code;
  }

  get httpStatus(): number {
    return CONNECT_CODES[this.code];
  }

  toJSON(): { code: ConnectCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export const ENVELOPE_FLAG = { compressed: 0x01, endStream: 0x02 } as const;

/** One stream message as bytes: flag, length, JSON. */
export function encodeEnvelope(message: unknown, flags = 0): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const frame = Buffer.allocUnsafe(5 + json.length);
  frame.writeUInt8(flags, 0);
  frame.writeUInt32BE(json.length, 1);
  json.copy(frame, 5);
  return frame;
}

/** The stream's last envelope: `{}` on success, the error otherwise. */
export function encodeEndStream(error?: ConnectError): Buffer {
  return encodeEnvelope(error ? { error: error.toJSON() } : {}, ENVELOPE_FLAG.endStream);
}

export interface Envelope {
  flags: number;
  data: Buffer;
}

/**
 * Splits a byte stream into envelopes as they complete. A length above
 * `maxMessageBytes` is refused before its body is buffered: a client cannot
 * make the reader hold more than that.
 */
export class EnvelopeReader {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): Envelope[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const envelopes: Envelope[] = [];
    while (this.buffer.length >= 5) {
      const length = this.buffer.readUInt32BE(1);
      if (length > this.maxMessageBytes) throw new ConnectError('resource_exhausted', `message of ${length} bytes is larger than the limit of ${this.maxMessageBytes}`);
      if (this.buffer.length < 5 + length) break;
      envelopes.push({ flags: this.buffer.readUInt8(0), data: this.buffer.subarray(5, 5 + length) });
      this.buffer = this.buffer.subarray(5 + length);
    }
    return envelopes;
  }

  /** Bytes received that do not yet make a whole envelope. */
  get pending(): number {
    return this.buffer.length;
  }
}

/** Parse a JSON message, answering invalid_argument (never a crash) when it is not an object. */
export function parseMessage(data: Buffer | string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(data.length === 0 ? '{}' : data.toString());
  } catch (error) {
    throw new ConnectError('invalid_argument', `request body is not valid JSON: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConnectError('invalid_argument', 'request body must be a JSON object');
  return value as Record<string, unknown>;
}
