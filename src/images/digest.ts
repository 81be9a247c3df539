/**
 * extractDigested: extractLayer, with the layer's digest computed on the way.
 * The digest is OCI's diffID: sha256 of the uncompressed tar stream, all of
 * it, including the zero blocks and record padding after the end-of-archive
 * block (so it equals `sha256sum` of the .tar). Bytes are hashed as they pass;
 * what the extractor does not read (the trailer) is drained and hashed after.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { extractLayer, type ExtractLimits, type ExtractResult } from './archive.ts';
import { invalid, openArchive } from './tar.ts';

/** Bytes allowed after the end-of-archive block (tar pads to 10 KiB records; some writers use larger ones). */
export const MAX_TRAILER_BYTES = 16 * 2 ** 20;

export interface DigestedLayer extends ExtractResult {
  /** "sha256:<hex>" of the uncompressed tar stream. */
  digest: string;
  /** Bytes of the uncompressed tar stream. */
  tarBytes: number;
}

export async function extractDigested(archive: Readable | string, destDir: string, limits: Partial<ExtractLimits> = {}): Promise<DigestedLayer> {
  const source = typeof archive === 'string' ? createReadStream(archive) : archive;
  const hash = createHash('sha256');
  let tarBytes = 0;
  let plain: AsyncIterator<Buffer | string> | undefined;
  try {
    plain = await openArchive(source);
    const inner = plain;
    // next() by hand, not for-await: when the extractor closes its stream, `plain` must stay open for the trailer
    async function* hashed(): AsyncGenerator<Buffer> {
      for (let next = await inner.next(); next.done !== true; next = await inner.next()) {
        const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
        hash.update(chunk);
        tarBytes += chunk.length;
        yield chunk;
      }
    }
    const result = await extractLayer(Readable.from(hashed(), { objectMode: false }), destDir, limits);
    const afterTar = tarBytes;
    for (let next = await inner.next(); next.done !== true; next = await inner.next()) {
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      hash.update(chunk);
      tarBytes += chunk.length;
      if (tarBytes - afterTar > MAX_TRAILER_BYTES) throw invalid(`the archive has more than ${MAX_TRAILER_BYTES} bytes after its end-of-archive block`);
    }
    return { ...result, digest: `sha256:${hash.digest('hex')}`, tarBytes };
  } catch (error) {
    // destDir is the caller's to remove: the extractor removes it on its own failures, not on a bad trailer
    if (typeof archive === 'string' && (error as NodeJS.ErrnoException).code === 'ENOENT') throw invalid(`the archive ${archive} does not exist`, 'check the path');
    throw error;
  } finally {
    await plain?.return?.();
    source.destroy();
  }
}
