import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeEnvelope } from '../../src/protocol/index.ts';
import { dataFrame } from '../../src/envd/process/output.ts';

test('dataFrame is byte for byte the envelope encodeEnvelope makes', () => {
  for (const size of [0, 1, 2, 3, 1000, 65536]) {
    const chunk = randomBytes(size);
    for (const kind of ['stdout', 'stderr', 'pty'] as const) {
      assert.deepEqual(dataFrame(kind, chunk), encodeEnvelope({ event: { data: { [kind]: chunk.toString('base64') } } }), `${kind}, ${size} bytes`);
    }
  }
});
