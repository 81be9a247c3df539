import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPolicy, resolvePolicy, workspace, type PolicyChange } from '../../../src/policy/index.ts';
import { planSandbox, type PlanOptions, type SandboxPlan } from '../../../src/drivers/index.ts';

/**
 * Plans as `brig run` makes them (planSandbox), for a workspace owned by
 * USER_UID: brig runs as root here, so the sandbox runs as the workspace's
 * owner, inside and out.
 */
export const USER_UID = 1000;

export function tempWorkspace(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'brig-gvisor-ws-'));
  chmodSync(dir, 0o755);
  chownSync(dir, USER_UID, USER_UID);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function fixturePlan(work: string, command: string[], ...changes: PolicyChange[]): SandboxPlan {
  return fixturePlanWith({}, work, command, ...changes);
}

export function fixturePlanWith(options: Partial<PlanOptions>, work: string, command: string[], ...changes: PolicyChange[]): SandboxPlan {
  const policy = resolvePolicy(buildPolicy(workspace(work), ...changes), { cwd: work, home: '/root' });
  const id = `gv-${process.pid}-${randomBytes(3).toString('hex')}`;
  return planSandbox(policy, command, { uid: 0, gid: 0, home: '/root', cwd: work, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, { tty: false, id, ...options });
}
