/** The part of undici the jail's Node preload (node-proxy.ts) needs, bundled to dist/inside/undici.cjs. */
export { EnvHttpProxyAgent } from 'undici';
