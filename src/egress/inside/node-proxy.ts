/**
 * Loaded into every Node process of an allowlist jail (NODE_OPTIONS=--require;
 * bundled to dist/inside/node-proxy.cjs): Node's own fetch ignores HTTP_PROXY
 * before Node 22's NODE_USE_ENV_PROXY, so without this `fetch('https://…')`
 * inside the jail would try to connect directly, and fail. undici, which is
 * Node's fetch, reads its dispatcher from a global symbol; undici's
 * EnvHttpProxyAgent honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY. It lives in a
 * file of its own (inside/undici.ts) loaded on the first fetch: reading it at
 * every start would cost each Node process in the jail about 9 ms.
 */
import { join } from 'node:path';

const DISPATCHER = Symbol.for('undici.globalDispatcher.1');
const globals = globalThis as unknown as Record<symbol, unknown> & { fetch?: typeof fetch };
const nodeFetch = globals.fetch;

if (typeof nodeFetch === 'function') {
  let installed = false;
  const viaProxy: typeof fetch = function (this: unknown, input, init) {
    if (!installed) {
      installed = true;
      // A path, not a literal: the bundler leaves it for run time.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { EnvHttpProxyAgent } = require(join(__dirname, 'undici.cjs')) as typeof import('undici');
      // undici calls it experimental at every construction; the program did not ask for it, so it should not see that.
      const emitWarning = process.emitWarning;
      process.emitWarning = () => {};
      try {
        globals[DISPATCHER] = new EnvHttpProxyAgent();
      } finally {
        process.emitWarning = emitWarning;
      }
    }
    return nodeFetch.call(this, input, init);
  };
  globals.fetch = viaProxy;
}
