import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { ConnectError, type FilesystemEvent, type WatchDirMessage } from '../../protocol/index.ts';
import type { Message, RpcContext, StreamWriter } from '../rpc.ts';
import { userPath } from '../users.ts';
import { DirWatcher, type WatchOptions } from './watch.ts';

/**
 * WatchDir (a server stream) and its polling form (CreateWatcher,
 * GetWatcherEvents, RemoveWatcher). Between a watcher and its reader sits a
 * bounded queue: a reader that falls behind (a slow socket, a client that
 * polls rarely) loses the oldest events, never envd's memory.
 */

/** Events held per watcher for its reader; past this the oldest are dropped. */
export const MAX_QUEUED_EVENTS = 10_000;
/** Polling watchers alive at once: each holds inotify watches until removed. */
export const MAX_POLLING_WATCHERS = 256;

/** The keepalive message of a WatchDir stream (no `event` wrapper, unlike process streams). */
export const WATCH_KEEPALIVE: WatchDirMessage = { keepalive: {} };

/** Events between a watcher and its reader, the newest MAX_QUEUED_EVENTS kept. */
export class EventQueue {
  private events: FilesystemEvent[] = [];
  private wake: (() => void) | null = null;

  push(event: FilesystemEvent): void {
    if (this.events.length >= MAX_QUEUED_EVENTS) this.events.shift();
    this.events.push(event);
    this.notify();
  }

  take(): FilesystemEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  /** Resolves when an event is queued or notify() is called. */
  wait(): Promise<void> {
    if (this.events.length > 0) return Promise.resolve();
    return new Promise((resolve) => (this.wake = resolve));
  }

  notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

async function watchTarget(message: Message, context: RpcContext): Promise<{ path: string; options: WatchOptions }> {
  const path = userPath(context.user, message.path);
  const stats = await stat(path);
  if (!stats.isDirectory()) throw new ConnectError('invalid_argument', `path is not a directory: ${path}`);
  return { path, options: { recursive: message.recursive === true, includeEntry: message.includeEntry === true } };
}

/**
 * `{"start":{}}` once the watch is in place, then `{"filesystem":…}` per
 * event, until the client leaves, Connect-Timeout-Ms passes (the SDK sends
 * its watch timeout, 60 s by default) or the watch fails.
 */
export async function watchDir(message: Message, context: RpcContext, stream: StreamWriter): Promise<void> {
  const { path, options } = await watchTarget(message, context);
  const queue = new EventQueue();
  let failure: ConnectError | null = null;
  const fail = (error: ConnectError): void => {
    failure ??= error;
    queue.notify();
  };
  const watcher = new DirWatcher(path, options, (event) => queue.push(event), fail);
  const stop = (): void => queue.notify();
  context.signal.addEventListener('abort', stop);
  const deadline = context.timeoutMs ? setTimeout(() => fail(new ConnectError('deadline_exceeded', `the watch reached its timeout of ${context.timeoutMs} ms`)), context.timeoutMs) : null;
  try {
    await watcher.start();
    await stream.send({ start: {} } satisfies WatchDirMessage);
    while (!stream.closed && !context.signal.aborted) {
      for (const event of queue.take()) await stream.send({ filesystem: event } satisfies WatchDirMessage);
      if (failure) throw failure;
      await queue.wait();
    }
  } finally {
    watcher.close();
    if (deadline) clearTimeout(deadline);
    context.signal.removeEventListener('abort', stop);
  }
}

interface PollingWatcher {
  watcher: DirWatcher;
  queue: EventQueue;
  failure: ConnectError | null;
}

/** The polling form: one registry per envd, emptied when it closes. */
export class PollingWatchers {
  private readonly watchers = new Map<string, PollingWatcher>();

  async create(message: Message, context: RpcContext): Promise<{ watcherId: string }> {
    if (this.watchers.size >= MAX_POLLING_WATCHERS) {
      throw new ConnectError('resource_exhausted', `${MAX_POLLING_WATCHERS} watchers are open; remove some with RemoveWatcher`);
    }
    const { path, options } = await watchTarget(message, context);
    const queue = new EventQueue();
    const entry: PollingWatcher = { watcher: null as unknown as DirWatcher, queue, failure: null };
    entry.watcher = new DirWatcher(path, options, (event) => queue.push(event), (error) => (entry.failure ??= error));
    await entry.watcher.start();
    const watcherId = 'w' + randomBytes(8).toString('hex');
    this.watchers.set(watcherId, entry);
    return { watcherId };
  }

  /** Events since the last call; a watch that failed reports its error (after its last events). */
  async events(message: Message): Promise<{ events: FilesystemEvent[] }> {
    const entry = this.find(message);
    const events = entry.queue.take();
    if (events.length === 0 && entry.failure) throw entry.failure;
    return { events };
  }

  async remove(message: Message): Promise<Record<string, never>> {
    const entry = this.find(message);
    entry.watcher.close();
    this.watchers.delete(String(message.watcherId));
    return {};
  }

  closeAll(): void {
    for (const entry of this.watchers.values()) entry.watcher.close();
    this.watchers.clear();
  }

  private find(message: Message): PollingWatcher {
    const entry = typeof message.watcherId === 'string' ? this.watchers.get(message.watcherId) : undefined;
    if (!entry) throw new ConnectError('not_found', `watcher with id ${String(message.watcherId)} not found`);
    return entry;
  }
}
