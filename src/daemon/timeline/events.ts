import { EventEmitter } from 'node:events';
import type { DaemonEvent, EventStore, EventType } from './types.ts';

/**
 * The daemon's event log: each event written to the store first (so a
 * follower that reconnects, or a restarted daemon, finds it), then told to
 * whoever follows live. Recording never throws into the code that reports:
 * an event lost to a full disk must not fail a create or a kill.
 */
export class EventLog {
  private readonly live = new EventEmitter();

  constructor(private readonly store: EventStore) {
    this.live.setMaxListeners(0);
  }

  record(type: EventType, about: { sandbox?: string | null; job?: string | null }, detail: Record<string, unknown> = {}): void {
    let event: DaemonEvent;
    try {
      event = this.store.addEvent({ time: new Date().toISOString(), type, sandbox: about.sandbox ?? null, job: about.job ?? null, detail });
    } catch {
      return;
    }
    this.live.emit('event', event);
  }

  /** Every event recorded from now on; returns what stops it. */
  follow(listener: (event: DaemonEvent) => void): () => void {
    this.live.on('event', listener);
    return () => this.live.off('event', listener);
  }

  read: EventStore['events'] = (query) => this.store.events(query);
}
