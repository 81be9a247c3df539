/** daemon/sandboxes: the sandboxes' lifecycle (no HTTP), and the types the store and the API share. */
export { createSandboxManager } from './manager.ts';
export type { ManagerOptions } from './manager.ts';
export type { Budgets } from './budgets.ts';
export type { CreateSandboxRequest, ListQuery, Page, SandboxManager, SandboxRecord, SandboxState, SandboxStats, Store, TemplateInfo, CommittedImage } from './types.ts';
