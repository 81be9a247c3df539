import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Sandbox, type SandboxOpts } from 'e2b';
import { buildPolicy } from '../../src/policy/index.ts';
import { planCgroup } from '../../src/drivers/host/cgroup.ts';
import { eventually, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';

const API_KEY = 'brig_test_key';
/** Creates tried until one is caught mid-boot (each boot takes tens of milliseconds; one poll takes well under one). */
const ATTEMPTS = 40;

function opts(daemon: RunningDaemon): SandboxOpts {
  return { apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts;
}

/** The cgroup directories the daemon (our child, so in our cgroups) makes for sandbox `id`. */
const cgroupDirs = (id: string): string[] => planCgroup(id, buildPolicy().resources).dirs;

function jailPids(id: string): number[] {
  return cgroupDirs(id).flatMap((dir) => {
    try {
      return readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

function envdStarted(id: string): boolean {
  return jailPids(id).some((pid) => {
    try {
      // envd itself (node envd.cjs …, perhaps through the dynamic loader), not bubblewrap or its launcher,
      // whose arguments name it too: once envd runs, bubblewrap has read everything the daemon fed it.
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return !/\/(bwrap|brig-exec)$/.test(argv[0] ?? '') && argv.some((arg) => arg.endsWith('envd.cjs'));
    } catch {
      return false;
    }
  });
}

/** The record's state as the (stopped or dead) daemon left it; read-only, so a write lock it held cannot block us. */
function recordedState(stateDir: string, id: string): string | null {
  const db = new Database(`${stateDir}/brig.db`, { readonly: true });
  try {
    return (db.prepare('SELECT state FROM sandboxes WHERE id = ?').get(id) as { state: string } | undefined)?.state ?? null;
  } finally {
    db.close();
  }
}

describe('brig serve: kill -9 while a create is booting', () => {
  test('the jail of a create the daemon never finished is stopped by the next daemon: no process, cgroup, directory or record of it is left', async () => {
    const state = tempWorkspace('brig-serve-');
    let daemon: RunningDaemon | null = null;
    let caught: string | null = null;
    try {
      for (let attempt = 0; attempt < ATTEMPTS && caught === null; attempt++) {
        daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
        const known = new Set(existsSync(`${state.dir}/sandboxes`) ? readdirSync(`${state.dir}/sandboxes`) : []);
        let answered = false;
        const creating = Sandbox.create(opts(daemon)).then(
          (sandbox) => ((answered = true), sandbox),
          () => ((answered = true), null),
        );
        // Wait for envd to be started in the jail (bubblewrap's setup done), then freeze the daemon and
        // look: is the boot still unfinished (the daemon has not yet seen envd answer)?
        let id: string | undefined;
        while (!answered) {
          id ??= readdirSync(`${state.dir}/sandboxes`).find((name) => !known.has(name));
          if (id && envdStarted(id)) {
            daemon.process.kill('SIGSTOP');
            if (recordedState(state.dir, id) === 'creating') caught = id;
            break;
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
        await daemon.stop('SIGKILL');
        daemon = null;
        const finished = await creating;
        if (caught === null && finished) {
          // Booted before we looked: clean it up through a daemon, and try again.
          daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
          await Sandbox.kill(finished.sandboxId, opts(daemon)).catch(() => false);
          await daemon.stop();
          daemon = null;
        }
      }
      assert.ok(caught, `a create was caught mid-boot within ${ATTEMPTS} attempts`);

      assert.ok(jailPids(caught).length > 0, 'its jail outlived the daemon');

      daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
      const id = caught;
      assert.ok(await eventually(() => jailPids(id).length === 0), `no process of ${id} is left: ${jailPids(id).join(', ')}`);
      for (const dir of cgroupDirs(id)) assert.equal(existsSync(dir), false, `${dir} is removed`);
      assert.equal(existsSync(`${state.dir}/sandboxes/${id}`), false, 'its directory is removed');
      assert.equal(recordedState(state.dir, id), null, 'its record is removed');
    } finally {
      // A daemon on the state directory reconciles whatever an attempt left, then stops.
      daemon ??= await serveDaemon(state.dir, { apiKey: API_KEY }).catch(() => null);
      await daemon?.stop();
      state.remove();
    }
  });
});
