/**
 * filesystem.Filesystem and the plain-HTTP /files of E2B's envd protocol
 * (../shared/protocols/envd.md): every path resolves inside the sandbox, in
 * the calling user's view (relative to their home).
 */
import { SERVICE } from '../../protocol/index.ts';
import type { EnvdServer } from '../server.ts';
import { download, upload } from './files.ts';
import { listDir, makeDir, move, remove, statEntry } from './rpc-handlers.ts';
import { PollingWatchers, WATCH_KEEPALIVE, watchDir } from './watch-rpc.ts';

export function registerFilesystem(server: EnvdServer): void {
  const service = SERVICE.filesystem;
  server.unary(`${service}/Stat`, statEntry);
  server.unary(`${service}/ListDir`, listDir);
  server.unary(`${service}/MakeDir`, makeDir);
  server.unary(`${service}/Move`, move);
  server.unary(`${service}/Remove`, remove);

  server.serverStream(`${service}/WatchDir`, watchDir, WATCH_KEEPALIVE);
  const watchers = new PollingWatchers();
  server.unary(`${service}/CreateWatcher`, (message, context) => watchers.create(message, context));
  server.unary(`${service}/GetWatcherEvents`, (message) => watchers.events(message));
  server.unary(`${service}/RemoveWatcher`, (message) => watchers.remove(message));
  server.onClose(() => watchers.closeAll());

  server.http('GET', '/files', download);
  server.http('POST', '/files', upload);
}
