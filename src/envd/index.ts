/**
 * envd: the agent inside every sandbox. It runs commands, terminals and file
 * operations from inside the jail, so every path resolves in the sandbox's
 * own view, and speaks E2B's envd protocol (docs/envd.md) so the e2b SDK
 * drives it unchanged. It imports only protocol/.
 */
import { EnvdServer } from './server.ts';
import { registerProcess } from './process/index.ts';
import { registerFilesystem } from './filesystem/index.ts';

export interface EnvdOptions {
  /** `host:port`, `:port`, or a unix socket path. */
  listen: string;
  /** When set, callers must present it (X-Access-Token, or a signed /files URL). */
  accessToken?: string | null;
  /** Where processes start when a call names no cwd (an image's WORKDIR); default: the user's home. */
  workdir?: string | null;
}

export interface Envd {
  /** Where it listens: `host:port` or `unix:/path`. */
  address: string;
  close(): Promise<void>;
}

export async function startEnvd(options: EnvdOptions): Promise<Envd> {
  const server = new EnvdServer({ accessToken: options.accessToken ?? null, workdir: options.workdir ?? null });
  registerProcess(server);
  registerFilesystem(server);
  const address = await server.listen(options.listen);
  return { address, close: () => server.close() };
}
