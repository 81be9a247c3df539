import { ENVELOPE_FLAG, EnvelopeReader } from './connect.ts';
import type { ProcessEvent } from './envd.ts';

/**
 * The process events of a Start or Connect answer (Connect's enveloped
 * JSON), in order, for every client of envd: the daemon's and the CLI's.
 * The stream ends when envd says so; an error it ends with is thrown as
 * `failed` makes it, and a stream cut before its end (the sandbox or a hop
 * gone) as `cut` makes it. A message larger than `maxBytes` is refused
 * before it is held whole (EnvelopeReader).
 */
export async function* processEvents(body: AsyncIterable<Buffer>, maxBytes: number, errors: { failed(code: string, message: string): Error; cut(): Error }): AsyncGenerator<ProcessEvent> {
  const reader = new EnvelopeReader(maxBytes);
  const chunks = body[Symbol.asyncIterator]();
  for (;;) {
    // A connection cut mid-stream is said as such, not as a socket error.
    const next = await chunks.next().catch(() => {
      throw errors.cut();
    });
    if (next.done) throw errors.cut();
    for (const envelope of reader.push(next.value)) {
      let message: { event?: ProcessEvent; error?: { code?: string; message?: string } };
      try {
        message = JSON.parse(envelope.data.toString() || '{}') as typeof message;
      } catch {
        throw errors.failed('internal', 'envd sent a message that is not JSON');
      }
      if (envelope.flags & ENVELOPE_FLAG.endStream) {
        if (message.error) throw errors.failed(message.error.code ?? 'unknown', message.error.message ?? 'the stream ended with an error');
        return;
      }
      if (message.event) yield message.event;
    }
  }
}
