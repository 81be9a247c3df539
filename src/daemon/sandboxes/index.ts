/** daemon/sandboxes: the sandboxes' lifecycle (no HTTP), the types the store and the API share, and the daemon's own client of a sandbox's envd. */
export { createSandboxManager } from './manager.ts';
export type { ManagerOptions } from './manager.ts';
export type { Budgets } from './budgets.ts';
export { EnvdClient, type EnvdClientOptions, type EnvdEndpoint } from './envd-client.ts';
export type { CreateSandboxRequest, ListQuery, Page, PortAddress, PortKind, PortStatus, PublishedPorts, SandboxManager, SandboxPorts, SandboxRecord, SandboxState, SandboxStats, Store, TemplateInfo, CommittedImage } from './types.ts';
