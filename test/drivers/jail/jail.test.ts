import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, symlinkSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { homedir } from 'node:os';
import { BRIG, eventually, runBrig, startBrig, tempWorkspace, collect } from '../../helpers/brig.ts';
import { TEST_TIERS } from '../../helpers/tiers.ts';

// Each test observes one property from inside a real sandbox (nsjail-style table where it fits), on every tier.
for (const { tier, skip } of TEST_TIERS) describe(`brig run --tier ${tier}: the sandbox as seen from inside`, { skip }, () => {
  let workspace: { dir: string; remove: () => void };
  const run = (command: string, flags: string[] = [], env?: NodeJS.ProcessEnv) =>
    runBrig(['run', '--tier', tier, ...flags, '--', '/bin/sh', '-c', command], { cwd: workspace.dir, env });
  const jailOnly = (why: string): { skip: string | false } => ({ skip: tier === 'jail' ? false : why });

  before(() => {
    workspace = tempWorkspace();
  });
  after(() => workspace.remove());

  test('no capabilities, no_new_privs, a seccomp filter', async () => {
    const result = await run('grep -E "^(CapEff|CapPrm|NoNewPrivs|Seccomp):" /proc/self/status');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /CapEff:\s+0000000000000000/);
    assert.match(result.stdout, /CapPrm:\s+0000000000000000/);
    // Under gVisor, the Sentry's own filter for the sandbox (the setuid rule, the policy's denials: linux.seccomp);
    // its /proc has no NoNewPrivs line. The Sentry itself runs under runsc's host filter.
    assert.match(result.stdout, /Seccomp:\s+2/);
    if (tier === 'gvisor') return;
    assert.match(result.stdout, /NoNewPrivs:\s+1/);
  });

  test('/proc/sys and the other kernel knobs are read-only, even when brig runs as root', async () => {
    // gVisor's /proc/sys is the Sentry's own and has no core_pattern: its knobs of the same kind are tried instead.
    const knob = tier === 'gvisor' ? '/proc/sys/vm/overcommit_memory' : '/proc/sys/kernel/core_pattern';
    const result = await run(`cat ${knob} >/dev/null && echo readable; echo "|/tmp/x" > ${knob} && echo WRITABLE; echo 1 > /proc/sys/vm/drop_caches && echo WRITABLE2; true`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /readable/);
    assert.doesNotMatch(result.stdout, /WRITABLE/);
    assert.notEqual(readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim(), '|/tmp/x');
  });

  test('the host home, /root and /etc/shadow are invisible', async () => {
    const marker = `${homedir()}/.brig-test-secret-${process.pid}`;
    writeFileSync(marker, 'secret');
    try {
      const result = await run(`test -e ${marker} && echo HOME_VISIBLE; ls -A /root; cat /etc/shadow; cat /etc/gshadow; echo done`);
      assert.equal(result.code, 0, result.stderr);
      assert.doesNotMatch(result.stdout, /HOME_VISIBLE/);
      assert.doesNotMatch(result.stdout, /brig-test-secret/);
      assert.doesNotMatch(result.stdout, /root:/, '/etc/shadow shows nothing');
      assert.match(result.stdout, /done/);
    } finally {
      rmSync(marker, { force: true });
    }
  });

  test('writes land in the workspace and nowhere else on the host', async () => {
    const result = await run('echo hi > made-inside; touch /usr/brig-x 2>/dev/null && echo USR; touch /etc/brig-x 2>/dev/null && echo ETC; touch /tmp/private && echo tmp-ok');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(readFileSync(`${workspace.dir}/made-inside`, 'utf8'), 'hi\n');
    assert.doesNotMatch(result.stdout, /USR|ETC/);
    assert.match(result.stdout, /tmp-ok/);
    assert.equal(existsSync('/tmp/private'), false, "the jail's /tmp is private");
  });

  test('the environment is scrubbed to a short safe list', async () => {
    const env = { ...process.env, GITHUB_TOKEN: 'ghp_leak', ANTHROPIC_API_KEY: 'sk-leak', LANG: 'C.UTF-8' };
    const result = await run('env', [], env);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stdout, /leak/);
    assert.match(result.stdout, /^LANG=C\.UTF-8$/m);
    assert.match(result.stdout, /^HOME=/m);
    const forwarded = await run('echo "$GITHUB_TOKEN"', ['--env', 'GITHUB_TOKEN', '--env', 'SET_HERE=yes'], env);
    assert.equal(forwarded.stdout, 'ghp_leak\n', 'forwarded only on request');
  });

  test('no network: only a private loopback, the host cannot be reached', async () => {
    const server: Server = createServer((socket) => socket.on('error', () => {}).end('host\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const jailed = await run(`cat /proc/net/dev | tail -n +3 | cut -d: -f1; perl -MIO::Socket::INET -e 'print IO::Socket::INET->new("127.0.0.1:${port}") ? "CONNECTED\\n" : "refused\\n"'`);
      assert.equal(jailed.code, 0, jailed.stderr);
      assert.deepEqual(jailed.stdout.split('\n').map((line) => line.trim()).filter(Boolean), ['lo', 'refused']);
      // A VM's host network is QEMU's user network, where the host's loopback is 10.0.2.2.
      const hostLoopback = tier === 'vm' ? '10.0.2.2' : '127.0.0.1';
      const shared = await run(`perl -MIO::Socket::INET -e 'print IO::Socket::INET->new("${hostLoopback}:${port}") ? "CONNECTED\\n" : "refused\\n"'`, ['--net', 'host']);
      assert.equal(shared.stdout, 'CONNECTED\n', `--net host widens it on request: ${shared.stderr}`);
    } finally {
      server.close();
    }
  });

  const pidsSkip = { gvisor: "Debian's runsc enforces no pids limit inside the sandbox: on gVisor the limit bounds the host tasks of the whole sandbox (drivers/gvisor/limits.ts; docs/tiers.md)" }[tier] ?? false;
  test('a fork loop is stopped by the pids limit', { skip: pidsSkip }, async () => {
    const result = await run(`perl -e 'for my $n (1..200) { my $pid = fork(); if (!defined $pid) { print "stopped at $n\\n"; exit 0 } if ($pid == 0) { sleep 60; exit 0 } } print "unbounded\\n"'`, ['--pids', '32', ...(tier === 'vm' ? ['--memory', '256m'] : [])]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^stopped at \d+$/m);
  });

  test('with --on-oom kill-sandbox a memory hog kills the whole jail, not only itself, and not the caller', async () => {
    // In 1 MiB pieces: a guest kernel refuses one 400 MiB allocation outright (no overcommit beyond its RAM), a cgroup does not.
    const result = await run(`sleep ${SLEEP} & echo $! > sibling.pid; perl -e '@x = map { "a" x (1 << 20) } 1 .. 400; print "survived\\n"'; echo after`, ['--memory', tier === 'vm' ? '256m' : '64m', '--on-oom', 'kill-sandbox']);
    assert.equal(result.code, 137, result.stderr);
    assert.match(result.stderr, /BRIG_OUT_OF_MEMORY/);
    assert.doesNotMatch(result.stdout, /survived|after/);
  });

  test('a minimal /dev: no /dev/kvm, no disks', async () => {
    const result = await run('ls /dev');
    assert.equal(result.code, 0, result.stderr);
    const devices = result.stdout.split('\n').filter(Boolean);
    assert.ok(!devices.includes('kvm'), '/dev/kvm is not there');
    assert.deepEqual(devices.filter((name) => /^(sd|vd|nvme|loop|mem|kmem|port)/.test(name)), []);
    assert.ok(devices.includes('null') && devices.includes('urandom'));
  });

  test('TIOCSTI is refused: nothing can be typed into a terminal', async () => {
    const result = await run(`perl -e 'my $c = "x"; ioctl(STDIN, 0x5412, $c) or print "refused: $!\\n"'`);
    assert.equal(result.code, 0, result.stderr);
    // The jail's seccomp filter refuses it; gVisor's Sentry has no TIOCSTI at all.
    assert.match(result.stdout, tier === 'gvisor' ? /refused: Inappropriate ioctl for device/ : /refused: Operation not permitted/);
  });

  test('rlimits: open files, processes, core dumps, file size', async () => {
    writeFileSync(`${workspace.dir}/small-files.json`, JSON.stringify({ resources: { maxFileSizeMiB: 64 } }));
    // dash's ulimit: -n open files, -p processes, -c core blocks, -f file size in 512-byte blocks.
    const result = await run('ulimit -Sn; ulimit -Hn; ulimit -Sp; ulimit -Hp; ulimit -c; ulimit -f', ['--policy', 'small-files.json']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n'), ['1024', '1024', '512', '512', '0', String((64 * 1024 * 1024) / 512)]);
  });

  test('the CPU quota and the limits are set on the jail\'s own cgroups while it runs', jailOnly('looks for the jail\'s sleeping process (a gVisor guest has none on the host): test/drivers/gvisor covers its cgroups'), async () => {
    const child = startBrig(['run', '--cpus', '0.5', '--memory', '300m', '--pids', '77', '--', '/bin/sh', '-c', `sleep ${SLEEP} & wait`], { cwd: workspace.dir });
    const result = collect(child);
    try {
      assert.ok(await eventually(() => jailedSleepers().length > 0), 'the jail started');
      const dirs = brigCgroups(child.pid);
      const read = (suffix: string): string | undefined => dirs.map((dir) => `${dir}/${suffix}`).filter((file) => existsSync(file)).map((file) => readFileSync(file, 'utf8').trim())[0];
      assert.equal(read('cpu.cfs_quota_us') ?? read('cpu.max')?.split(' ')[0], '50000');
      assert.equal(read('memory.limit_in_bytes') ?? read('memory.max'), String(300 * 1024 * 1024));
      assert.equal(read('pids.max'), '77');
    } finally {
      child.kill('SIGTERM');
      await result;
    }
  });

  test('exit codes and signals pass through', async () => {
    assert.equal((await run('exit 7')).code, 7);
    assert.equal((await run('kill -TERM $$')).code, 143);
    assert.equal((await run('kill -KILL $$')).code, 137);
  });

  test('an E2B layout: the workspace at /home/user, the user named user', async () => {
    // gVisor and the VM give files the uid they have inside (they map no ids): the user's workspace is its own on the host too.
    const owned = tempWorkspace('brig-e2b-');
    try {
      if (tier !== 'jail') chownSync(owned.dir, 1000, 1000);
      writeFileSync(`${owned.dir}/e2b.json`, JSON.stringify({ filesystem: { workspaceTarget: '/home/user' }, identity: { uid: 1000, gid: 1000, user: 'user', home: '/home/user' } }));
      const result = await runBrig(['run', '--tier', tier, '--policy', 'e2b.json', '--', '/bin/sh', '-c', 'pwd; echo "$HOME $USER"; id -un; echo hi > from-user; ls /home'], { cwd: owned.dir });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout.trim().split('\n'), ['/home/user', '/home/user user', 'user', 'user']);
      assert.equal(readFileSync(`${owned.dir}/from-user`, 'utf8'), 'hi\n', 'written through to the host workspace');
      assert.equal(statSync(`${owned.dir}/from-user`).uid, tier === 'jail' ? 0 : 1000, "the workspace owner's on the host");
    } finally {
      owned.remove();
    }
  });

  test('the jail runs as the workspace owner when brig is root', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async () => {
    const owned = tempWorkspace('brig-owned-');
    try {
      chownSync(owned.dir, 1000, 1000);
      const result = await runBrig(['run', '--', '/bin/sh', '-c', 'id -u; touch made; cat /proc/self/uid_map'], { cwd: owned.dir });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^1000$/m);
      assert.equal(statSync(`${owned.dir}/made`).uid, 1000, 'files belong to the workspace owner on the host');
    } finally {
      owned.remove();
    }
  });
});

describe('brig run: errors have codes, hints and their own exit codes', () => {
  let workspace: { dir: string; remove: () => void };
  before(() => {
    workspace = tempWorkspace();
  });
  after(() => workspace.remove());

  const cases: Array<{ name: string; args: string[]; exit: number; code: string }> = [
    { name: 'unknown flag', args: ['run', '--frobnicate', '--', 'true'], exit: 125, code: 'BRIG_USAGE' },
    { name: 'missing flag value', args: ['run', '--memory'], exit: 125, code: 'BRIG_USAGE' },
    { name: 'bad memory size', args: ['run', '--memory', 'lots', '--', 'true'], exit: 125, code: 'BRIG_USAGE' },
    { name: 'bad network mode', args: ['run', '--net', 'wifi', '--', 'true'], exit: 125, code: 'BRIG_USAGE' },
    { name: 'path that does not exist', args: ['run', '--ro', '/does/not/exist', '--', 'true'], exit: 125, code: 'BRIG_PATH_MISSING' },
    { name: 'policy file that does not exist', args: ['run', '--policy', '/does/not/exist.json', '--', 'true'], exit: 125, code: 'BRIG_POLICY_FILE' },
    { name: 'command not found', args: ['run', '--', 'no-such-command-brig'], exit: 127, code: 'BRIG_COMMAND_NOT_FOUND' },
    { name: 'unknown subcommand', args: ['frob'], exit: 125, code: 'BRIG_USAGE' },
  ];
  for (const { name, args, exit, code } of cases) {
    test(name, async () => {
      const result = await runBrig(args, { cwd: workspace.dir });
      assert.equal(result.code, exit, result.stderr);
      assert.match(result.stderr, new RegExp(`\\[${code}\\]`));
      assert.match(result.stderr, /hint: /);
      assert.equal(result.stderr.trim().split('\n').length, 2, 'one line of error, one of hint');
    });
  }

  test('--dry-run prints the plan and runs nothing', async () => {
    const result = await runBrig(['run', '--dry-run', '--', '/bin/sh', '-c', 'touch ran'], { cwd: workspace.dir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /bwrap/);
    assert.match(result.stdout, /seccomp: \d+ BPF instructions/);
    assert.match(result.stdout, /limits: memory 2048 MiB, cpus 2, pids 512/);
    assert.equal(existsSync(`${workspace.dir}/ran`), false);
    const json = JSON.parse((await runBrig(['run', '--dry-run', '--json', '--', 'true'], { cwd: workspace.dir })).stdout) as { argv: string[]; limits: { memoryMiB: number } };
    assert.ok(json.argv.includes('--unshare-net'));
    assert.equal(json.limits.memoryMiB, 2048);
  });

  test('bubblewrap missing', async () => {
    const bin = tempWorkspace('brig-path-');
    try {
      symlinkSync(process.execPath, `${bin.dir}/node`);
      const result = await runBrig(['run', '--', 'true'], { cwd: workspace.dir, env: { PATH: bin.dir, HOME: process.env.HOME } });
      assert.equal(result.code, 125, result.stderr);
      assert.match(result.stderr, /\[BRIG_BWRAP_MISSING\]/);
      assert.match(result.stderr, /hint: .*setup/);
    } finally {
      bin.remove();
    }
  });

  test('a command that is not executable', async () => {
    writeFileSync(`${workspace.dir}/script.sh`, '#!/bin/sh\necho hi\n');
    chmodSync(`${workspace.dir}/script.sh`, 0o644);
    const result = await runBrig(['run', '--', './script.sh'], { cwd: workspace.dir });
    assert.equal(result.code, 126, result.stderr);
    assert.match(result.stderr, /BRIG_COMMAND_NOT_EXECUTABLE/);
  });

  test('an invalid policy file names the field', async () => {
    writeFileSync(`${workspace.dir}/bad.json`, JSON.stringify({ resources: { memoryMiB: 'lots' }, bogus: 1 }));
    const result = await runBrig(['run', '--policy', 'bad.json', '--', 'true'], { cwd: workspace.dir });
    assert.equal(result.code, 125);
    assert.match(result.stderr, /BRIG_POLICY_INVALID/);
    assert.match(result.stderr, /resources\.memoryMiB/);
    assert.match(result.stderr, /bogus/);
  });
});

describe('brig run: nothing is left behind', () => {
  let workspace: { dir: string; remove: () => void };
  before(() => {
    workspace = tempWorkspace();
  });
  after(() => workspace.remove());

  test('Ctrl-C (SIGINT to brig) ends the whole jail', async () => {
    const child = startBrig(['run', '--', '/bin/sh', '-c', `sleep ${SLEEP} & echo started; wait`], { cwd: workspace.dir });
    const result = collect(child);
    assert.ok(await eventually(() => jailedSleepers().length > 0), 'the jail started');
    child.kill('SIGINT');
    const { code } = await result;
    assert.equal(code, 130);
    assert.ok(await eventually(() => jailedSleepers().length === 0), 'no jailed process survives');
  });

  test('after SIGKILL of brig: the jail dies with it and the next brig sweeps the rest', async () => {
    const child = startBrig(['run', '--', '/bin/sh', '-c', `sleep ${SLEEP} & wait`], { cwd: workspace.dir });
    const result = collect(child);
    assert.ok(await eventually(() => jailedSleepers().length > 0), 'the jail started');
    const cgroups = brigCgroups(child.pid);
    assert.ok(cgroups.length > 0, 'the jail has cgroups');
    child.kill('SIGKILL');
    await result;
    assert.ok(await eventually(() => jailedSleepers().length === 0), 'the jail died with brig');
    const next = await runBrig(['run', '--', 'true'], { cwd: workspace.dir });
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(cgroups.filter((dir) => existsSync(dir)), [], 'the next run removed the cgroups');
    assert.deepEqual(leftoverRecords().filter((name) => name.startsWith(`${child.pid}-`)), [], 'and the records');
  });

  test('an ordinary run leaves no cgroup, record or process', async () => {
    const child = startBrig(['run', '--', '/bin/sh', '-c', `sleep ${SLEEP} & exit 0`], { cwd: workspace.dir });
    const result = await collect(child);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(brigCgroups(child.pid), []);
    assert.deepEqual(jailedSleepers(), []);
  });
});

/**
 * How long the jails of this file sleep: a number no other test process uses, so
 * jails that colleagues' tests run on the same host at the same time are not counted.
 */
const SLEEP = String(100000 + process.pid);

/** `sleep SLEEP` processes on this host: only jails of this file start them. */
function jailedSleepers(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8') === `sleep\u0000${SLEEP}\u0000`) found.push(Number(entry));
    } catch {
      // Gone already.
    }
  }
  return found;
}

/** The cgroups of the jails started by the brig with this pid (named brig-<pid>-<suffix>). */
function brigCgroups(brigPid: number | undefined): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4) return;
    let names: string[];
    try {
      names = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith(`brig-${brigPid}-`)) found.push(`${dir}/${name}`);
      else walk(`${dir}/${name}`, depth + 1);
    }
  };
  for (const hierarchy of ['memory', 'pids', 'cpu', 'cpuacct', 'unified']) walk(`/sys/fs/cgroup/${hierarchy}`, 0);
  return found;
}

function leftoverRecords(): string[] {
  const dir = process.env.XDG_RUNTIME_DIR ? `${process.env.XDG_RUNTIME_DIR}/brig/jails` : process.getuid?.() === 0 ? '/run/brig/jails' : `/tmp/brig-${process.getuid?.()}/jails`;
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

describe('brig run as an unprivileged user', { skip: process.getuid?.() !== 0 ? 'needs root to create the user and delegate a cgroup' : false }, () => {
  const UID = 1000;
  let workspace: { dir: string; remove: () => void };
  let home: { dir: string; remove: () => void };
  const delegated: string[] = [];

  before(() => {
    workspace = tempWorkspace();
    home = tempWorkspace('brig-home-');
    chownSync(workspace.dir, UID, UID);
    chownSync(home.dir, UID, UID);
  });
  after(() => {
    workspace.remove();
    home.remove();
    for (const dir of delegated.reverse()) rmdirSync(dir);
  });

  /** Run brig as UID from a shell that first enters the given cgroups (as systemd does for a delegated scope). */
  const runAsUser = (cgroupTasks: string[], command: string) =>
    collect(
      spawn('/bin/sh', ['-c', 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 99; shift; done; shift; exec setpriv --reuid 1000 --regid 1000 --clear-groups "$@"', 'sh', ...cgroupTasks, '--', BRIG, 'run', '--', '/bin/sh', '-c', command], {
        cwd: workspace.dir,
        env: { PATH: process.env.PATH, HOME: home.dir, LANG: 'C.UTF-8' },
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );

  test('without a cgroup of its own, brig refuses rather than run without limits', async () => {
    const result = await runAsUser([], 'true');
    assert.equal(result.code, 125, result.stderr);
    assert.match(result.stderr, /BRIG_CGROUP_UNAVAILABLE/);
  });

  test('in a delegated cgroup: the jail holds, the limits hold, nothing is left', async () => {
    const tasks: string[] = [];
    for (const hierarchy of ['memory', 'pids', 'cpu', 'cpuacct'].filter((name) => existsSync(`/sys/fs/cgroup/${name}`))) {
      const own = readFileSync('/proc/self/cgroup', 'utf8').match(new RegExp(`^\\d+:[^:]*\\b${hierarchy}\\b[^:]*:(.*)$`, 'm'))?.[1] ?? '/';
      const dir = `/sys/fs/cgroup/${hierarchy}${own === '/' ? '' : own}/brig-test-user-${process.pid}`;
      mkdirSync(dir);
      delegated.push(dir);
      for (const file of ['', '/tasks', '/cgroup.procs']) chownSync(`${dir}${file}`, UID, UID);
      tasks.push(`${dir}/tasks`);
    }
    const result = await runAsUser(tasks, `id -u; grep CapEff /proc/self/status; cat /etc/shadow 2>&1 | head -c 0; test -r /etc/shadow && cat /etc/shadow; touch made-here && echo wrote; echo x > /proc/sys/kernel/core_pattern 2>/dev/null || echo sysctl-refused`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^1000$/m);
    assert.match(result.stdout, /CapEff:\s+0{16}/);
    assert.doesNotMatch(result.stdout, /root:/);
    assert.match(result.stdout, /wrote/);
    assert.match(result.stdout, /sysctl-refused/);
    assert.equal(statSync(`${workspace.dir}/made-here`).uid, UID);
    for (const dir of delegated) assert.deepEqual(readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory() && entry.name.startsWith('brig-')), [], `${dir} has no jail cgroup left`);
  });
});
