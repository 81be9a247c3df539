/**
 * store/: where the daemon writes sandboxes down before any side effect
 * (DESIGN: nothing lost). SQLite by default, one file; callers hold only the
 * Store interface, so a Postgres store for several hosts can follow without
 * touching them.
 */
export { openSqliteStore } from './sqlite.ts';
export type { Store } from '../sandboxes/index.ts';
