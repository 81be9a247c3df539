import { BrigError } from '../../protocol/index.ts';

export interface ServerEvent {
  event: string;
  data: string;
}

/**
 * Server-sent events (the WHATWG format: `field: value` lines, a blank line
 * ends an event; `event` defaults to `message`, `data` lines join with \n,
 * `:` lines are comments), one at a time. An event larger than `maxBytes`,
 * its lines counted as they come, is refused before it is held whole.
 */
export async function* serverEvents(stream: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<ServerEvent> {
  let partial: Buffer[] = [];
  let partialBytes = 0;
  let eventBytes = 0;
  let event = 'message';
  let data: string[] = [];
  const tooLarge = (): BrigError => new BrigError('BRIG_INTERNAL', `the daemon sent an event larger than ${maxBytes} bytes`, 'the job goes on (`brig status ID` shows it); this is a bug in brig, please report it');
  for await (const chunk of stream) {
    let start = 0;
    for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
      eventBytes += partialBytes + newline - start + 1;
      if (eventBytes > maxBytes) throw tooLarge();
      let line = Buffer.concat([...partial, chunk.subarray(start, newline)]).toString('utf8');
      partial = [];
      partialBytes = 0;
      start = newline + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length > 0) yield { event, data: data.join('\n') };
        event = 'message';
        data = [];
        eventBytes = 0;
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (start < chunk.length) {
      partial.push(chunk.subarray(start));
      partialBytes += chunk.length - start;
      if (eventBytes + partialBytes > maxBytes) throw tooLarge();
    }
  }
}
