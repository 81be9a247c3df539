import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { compileSeccomp, disassemble, evaluateSeccomp, hostSeccompArch } from '../../../src/drivers/jail/seccomp/index.ts';
import type { SeccompArch } from '../../../src/drivers/jail/seccomp/index.ts';
import { ARCHES } from '../../../src/drivers/jail/seccomp/arch.ts';
import {
  AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Assembler, BPF_ABS, BPF_ALU, BPF_AND,
  BPF_DIV, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_MEM, BPF_MOD, BPF_RET, BPF_A, BPF_ST, BPF_W, BPF_X,
  BPF_IMM, BPF_ADD, BPF_LSH, BPF_NEG, BPF_MISC, BPF_TAX, BPF_TXA, BPF_H, BPF_JGT,
} from '../../../src/drivers/jail/seccomp/bpf.ts';
import { CLONE_NEW_MASK, DENY_RULES } from '../../../src/drivers/jail/seccomp/rules.ts';
import type { DenyRule } from '../../../src/drivers/jail/seccomp/rules.ts';
import { BrigError } from '../../../src/protocol/index.ts';
import { DOCKER_ALLOW_ALWAYS, DOCKER_ALLOW_ARCH, DOCKER_ALLOW_MIN_KERNEL_4_8, DOCKER_CONDITIONAL } from '../../fixtures/docker-default-seccomp.ts';

const ARCH_LIST: readonly SeccompArch[] = ['x86_64', 'aarch64'];
const AUDIT: Record<SeccompArch, number> = { x86_64: AUDIT_ARCH_X86_64, aarch64: AUDIT_ARCH_AARCH64 };
const EPERM = 1;
const ENOSYS = 38;

const CLONE_NEW_FLAGS = {
  CLONE_NEWNS: 0x00020000, CLONE_NEWCGROUP: 0x02000000, CLONE_NEWUTS: 0x04000000, CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000, CLONE_NEWPID: 0x20000000, CLONE_NEWNET: 0x40000000,
};
/** What glibc's pthread_create passes to clone. */
const THREAD_FLAGS = 0x3d0f00n;
/** What glibc's fork passes to clone: CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD. */
const FORK_FLAGS = 0x01200011n;
const TIOCSTI = 0x5412n;
const TIOCLINUX = 0x541cn;
const HIGH_BITS = 0xffffffff00000000n;

function compiled(arch: SeccompArch, logOnly = false, extraDeny: string[] = []): Buffer {
  return compileSeccomp({ arch, extraDeny, logOnly }).program;
}

function nr(arch: SeccompArch, name: string): number {
  const value = ARCHES[arch].syscalls[name];
  assert.ok(typeof value === 'number', `${name} is not a syscall on ${arch}`);
  return value;
}

function run(program: Buffer, arch: SeccompArch, name: string, args: bigint[] = []) {
  return evaluateSeccomp(program, { arch: AUDIT[arch], nr: nr(arch, name), args });
}

function names(arch: SeccompArch): string[] {
  return Object.keys(ARCHES[arch].syscalls);
}

function rulesOn(arch: SeccompArch): DenyRule[] {
  return DENY_RULES.filter((rule) => ARCHES[arch].syscalls[rule.name] !== undefined);
}

describe('seccomp program structure', () => {
  for (const arch of ARCH_LIST) {
    it(`${arch}: checks the architecture first, then loads the number`, () => {
      const program = compiled(arch);
      const lines = disassemble(program);
      assert.equal(lines.length, program.length / 8);
      assert.match(lines[0] ?? '', /^0000: ld +\[4\] .*; A = arch$/);
      assert.match(lines[1] ?? '', new RegExp(`^0001: jeq +#0x${AUDIT[arch].toString(16)} +jt 0003 jf 0002 .*AUDIT_ARCH_${arch.toUpperCase()}`));
      assert.match(lines[2] ?? '', /^0002: ret +#0x80000000 .*KILL_PROCESS$/);
      assert.match(lines[3] ?? '', /^0003: ld +\[0\] .*; A = nr$/);
      if (arch === 'x86_64') {
        assert.match(lines[4] ?? '', /^0004: jset +#0x40000000 +jt 0005 jf 0006 .*x32 ABI bit/);
        assert.match(lines[5] ?? '', /^0005: ret +#0x50026 .*ERRNO\(38 ENOSYS\)/);
        assert.match(lines[6] ?? '', /^0006: jge /);
      } else {
        assert.match(lines[4] ?? '', /^0004: jge /);
      }
      assert.ok(lines.every((line, pc) => line.startsWith(`${String(pc).padStart(4, '0')}: `)));
      assert.ok(lines.filter((line) => line.includes('ld   [4]')).length === 1, 'arch is loaded once');
      assert.ok(program.length / 8 < 400, `small program: ${program.length / 8} instructions`);
    });
  }

  it('names syscalls in comparisons and fields in loads', () => {
    const lines = disassemble(compiled('x86_64'));
    assert.ok(lines.some((line) => /^\d{4}: jge +#\d+ +jt \d{4} jf \d{4} +; nr >= [a-z_0-9]+$/.test(line)));
    assert.ok(lines.some((line) => /ld +\[16\] .*args\[0\] \(low 32 bits\)/.test(line)), 'an argument block reads args[0]');
    assert.ok(lines.some((line) => /ld +\[24\] .*args\[1\] \(low 32 bits\)/.test(line)), 'the ioctl block reads args[1]');
  });

  it('is accepted by the interpreter\'s load-time checks, which mirror the kernel\'s', () => {
    for (const arch of ARCH_LIST) for (const logOnly of [false, true]) evaluateSeccomp(compiled(arch, logOnly), { arch: 0, nr: 0 });
  });

  it('uses ja trampolines when a search subtree is longer than a conditional jump can reach', () => {
    // Deny every other allowed syscall: about 470 ranges, so the root's left half is ~470 instructions long.
    const allowed = names('x86_64').filter((name) => run(compiled('x86_64'), 'x86_64', name).action === 'allow');
    const extraDeny = allowed.filter((_, i) => i % 2 === 0);
    const program = compiled('x86_64', false, extraDeny);
    const lines = disassemble(program);
    assert.ok(program.length / 8 > 600, `long program: ${program.length / 8}`);
    const trampolines = lines.filter((line, pc) => /jge .*jt (\d+) jf/.test(line) && / ja /.test(lines[pc + 1] ?? '') && line.includes(`jt ${String(pc + 1).padStart(4, '0')}`));
    assert.ok(trampolines.length > 0, 'at least one jge jumps to a ja trampoline');
    // And every number still gets the right answer.
    for (const name of names('x86_64')) {
      const expected = extraDeny.includes(name) ? 'errno' : run(compiled('x86_64'), 'x86_64', name).action;
      assert.equal(run(program, 'x86_64', name).action, expected, name);
    }
  });
});

describe('seccomp deny rules', () => {
  for (const arch of ARCH_LIST) {
    it(`${arch}: every unconditional rule denies with its errno`, () => {
      const program = compiled(arch);
      const unconditional = rulesOn(arch).filter((rule) => !rule.args);
      assert.ok(unconditional.length > 50);
      for (const rule of unconditional) {
        const errno = rule.errno === 'ENOSYS' ? ENOSYS : EPERM;
        assert.deepEqual(run(program, arch, rule.name, [0n, 1n, 2n, 3n, 4n, 5n]), { action: 'errno', errno }, rule.name);
      }
    });

    it(`${arch}: the explicit brig list is denied`, () => {
      const program = compiled(arch);
      const explicit = [
        'unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'move_mount', 'open_tree', 'fsopen', 'fsconfig', 'fsmount',
        'fspick', 'mount_setattr', 'ptrace', 'bpf', 'perf_event_open', 'userfaultfd', 'keyctl', 'add_key', 'request_key',
        'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'kexec_load', 'kexec_file_load', 'init_module',
        'finit_module', 'delete_module', 'open_by_handle_at', 'name_to_handle_at',
      ];
      for (const name of explicit) assert.deepEqual(run(program, arch, name), { action: 'errno', errno: EPERM }, name);
      assert.deepEqual(run(program, arch, 'clone3'), { action: 'errno', errno: ENOSYS });
    });

    it(`${arch}: ordinary syscalls are allowed`, () => {
      const program = compiled(arch);
      const ordinary = [
        'read', 'write', 'openat', 'close', 'mmap', 'mprotect', 'munmap', 'brk', 'execve', 'execveat', 'exit_group',
        'futex', 'fstat', 'newfstatat', 'statx', 'getpid', 'gettid', 'rt_sigaction', 'rt_sigprocmask', 'wait4',
        'pipe2', 'dup3', 'epoll_pwait', 'getrandom', 'prctl', 'seccomp', 'set_robust_list', 'rseq', 'sched_yield',
        'getdents64', 'lseek', 'kill', 'tgkill', 'connect', 'bind', 'sendmsg', 'recvmsg', 'fchmodat2', 'close_range',
        'landlock_create_ruleset', 'memfd_create', 'madvise', 'prlimit64', 'uname', 'clock_nanosleep',
      ];
      for (const name of ordinary) assert.deepEqual(run(program, arch, name), { action: 'allow' }, name);
      if (arch === 'x86_64') {
        for (const name of ['open', 'stat', 'access', 'arch_prctl', 'fork', 'vfork', 'poll', 'select', 'modify_ldt']) {
          assert.deepEqual(run(program, arch, name), { action: 'allow' }, name);
        }
      }
    });

    it(`${arch}: clone is allowed for threads and processes, denied with any CLONE_NEW* flag`, () => {
      const program = compiled(arch);
      assert.equal(run(program, arch, 'clone', [THREAD_FLAGS]).action, 'allow');
      assert.equal(run(program, arch, 'clone', [FORK_FLAGS]).action, 'allow');
      assert.equal(run(program, arch, 'clone', [0n]).action, 'allow');
      // The kernel reads only the low 32 bits of clone's flags; so does the filter.
      assert.equal(run(program, arch, 'clone', [THREAD_FLAGS | HIGH_BITS]).action, 'allow');
      for (const [flag, value] of Object.entries(CLONE_NEW_FLAGS)) {
        assert.deepEqual(run(program, arch, 'clone', [BigInt(value)]), { action: 'errno', errno: EPERM }, flag);
        assert.deepEqual(run(program, arch, 'clone', [BigInt(value) | FORK_FLAGS | HIGH_BITS]), { action: 'errno', errno: EPERM }, flag);
      }
      assert.equal(Object.values(CLONE_NEW_FLAGS).reduce((a, b) => a | b), CLONE_NEW_MASK);
      // Flags are arg0 on both architectures: a namespace flag in arg1 (the stack) is no namespace.
      assert.equal(run(program, arch, 'clone', [FORK_FLAGS, BigInt(CLONE_NEW_FLAGS.CLONE_NEWUSER)]).action, 'allow');
    });

    it(`${arch}: ioctl TIOCSTI and TIOCLINUX are denied on their low 32 bits, other requests allowed`, () => {
      const program = compiled(arch);
      for (const cmd of [TIOCSTI, TIOCLINUX, TIOCSTI | HIGH_BITS, TIOCLINUX | 0x100000000n]) {
        assert.deepEqual(run(program, arch, 'ioctl', [0n, cmd, 0n]), { action: 'errno', errno: EPERM }, cmd.toString(16));
      }
      for (const cmd of [0x5401n /* TCGETS */, 0x541bn /* FIONREAD */, 0x5413n /* TIOCGWINSZ */, 0x5411n, 0x541dn, TIOCSTI << 32n]) {
        assert.equal(run(program, arch, 'ioctl', [0n, cmd, 0n]).action, 'allow', cmd.toString(16));
      }
      // The request is arg1: TIOCSTI as the fd is nothing.
      assert.equal(run(program, arch, 'ioctl', [TIOCSTI, 0x5401n]).action, 'allow');
    });

    it(`${arch}: personality allows only Docker's values`, () => {
      const program = compiled(arch);
      for (const persona of DOCKER_CONDITIONAL.personalityAllowed) {
        assert.equal(run(program, arch, 'personality', [BigInt(persona)]).action, 'allow', persona.toString(16));
      }
      for (const persona of [0x0040000n /* ADDR_NO_RANDOMIZE */, 0x0400000n /* READ_IMPLIES_EXEC */, 0x1n, 0x20009n, 0xfffffffen]) {
        assert.deepEqual(run(program, arch, 'personality', [persona]), { action: 'errno', errno: EPERM }, persona.toString(16));
      }
    });

    it(`${arch}: socket is allowed except for AF_VSOCK`, () => {
      const program = compiled(arch);
      for (const family of [1n /* AF_UNIX */, 2n /* AF_INET */, 10n /* AF_INET6 */, 16n /* AF_NETLINK */]) {
        assert.equal(run(program, arch, 'socket', [family, 1n, 0n]).action, 'allow', String(family));
      }
      assert.deepEqual(run(program, arch, 'socket', [40n, 1n, 0n]), { action: 'errno', errno: EPERM });
      assert.deepEqual(run(program, arch, 'socket', [40n | HIGH_BITS, 1n, 0n]), { action: 'errno', errno: EPERM });
    });

    it(`${arch}: numbers the table does not name get ENOSYS`, () => {
      const program = compiled(arch);
      const info = ARCHES[arch];
      const numbers = new Set(Object.values(info.syscalls));
      for (let n = 0; n <= info.last + 100; n++) {
        if (numbers.has(n)) continue;
        assert.deepEqual(evaluateSeccomp(program, { arch: AUDIT[arch], nr: n }), { action: 'errno', errno: ENOSYS }, String(n));
      }
      for (const n of [1000, 0x3fffffff, 0x7fffffff, -1]) {
        const expected = { action: 'errno', errno: ENOSYS };
        assert.deepEqual(evaluateSeccomp(program, { arch: AUDIT[arch], nr: n }), expected, String(n));
      }
    });

    it(`${arch}: a syscall from another ABI kills the process`, () => {
      const program = compiled(arch);
      const foreign = arch === 'x86_64' ? [AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, 0] : [AUDIT_ARCH_ARM, AUDIT_ARCH_X86_64, 0];
      for (const audit of foreign) {
        for (const n of [0, 1, 39, 172, 0x40000000]) {
          assert.deepEqual(evaluateSeccomp(program, { arch: audit, nr: n }), { action: 'kill_process' }, `${audit.toString(16)}/${n}`);
        }
        assert.deepEqual(evaluateSeccomp(compiled(arch, true), { arch: audit, nr: 0 }), { action: 'kill_process' }, 'log-only too');
      }
    });

    it(`${arch}: log-only turns every deny into a log entry and keeps the ABI checks`, () => {
      const strict = compiled(arch);
      const logging = compiled(arch, true);
      for (const name of names(arch)) {
        for (const args of [[0n, 0n], [BigInt(CLONE_NEW_MASK), TIOCSTI], [40n, TIOCLINUX], [0x400000n, 0n]]) {
          const before = run(strict, arch, name, args);
          const after = run(logging, arch, name, args);
          assert.deepEqual(after, before.action === 'errno' ? { action: 'log' } : before, name);
        }
      }
      assert.deepEqual(evaluateSeccomp(logging, { arch: AUDIT[arch], nr: ARCHES[arch].last + 1 }), { action: 'log' });
      if (arch === 'x86_64') {
        assert.deepEqual(evaluateSeccomp(logging, { arch: AUDIT_ARCH_X86_64, nr: 0x40000000 | 39 }), { action: 'errno', errno: ENOSYS });
      }
      assert.ok(compileSeccomp({ arch, extraDeny: [], logOnly: true }).summary.some((line) => line.startsWith('log (instead of EPERM) ptrace:')));
    });

    it(`${arch}: the summary has one line per rule`, () => {
      const { summary } = compileSeccomp({ arch, extraDeny: [], logOnly: false });
      for (const rule of rulesOn(arch)) {
        const lines = summary.filter((line) => line.includes(` ${rule.name}: `) || line.includes(` ${rule.name} when `));
        assert.equal(lines.length, 1, rule.name);
        assert.ok(lines[0]?.endsWith(rule.reason), rule.name);
      }
      assert.ok(summary.includes(`deny (EPERM) ptrace: ${DENY_RULES.find((rule) => rule.name === 'ptrace')?.reason}`));
      assert.match(summary[0] ?? '', /^kill process: /);
    });
  }

  it('x86_64: x32 syscalls fail with ENOSYS', () => {
    const program = compiled('x86_64');
    for (const n of [0, 39, 101, 512, 521, 547, 0x3fffffff]) {
      assert.deepEqual(evaluateSeccomp(program, { arch: AUDIT_ARCH_X86_64, nr: 0x40000000 | n }), { action: 'errno', errno: ENOSYS }, String(n));
    }
  });

  it('aarch64 has no x32 check', () => {
    assert.ok(!disassemble(compiled('aarch64')).some((line) => line.includes('0x40000000')));
  });
});

describe('seccomp extraDeny', () => {
  it('adds a rule for a known name', () => {
    const before = compiled('x86_64');
    const { program, summary } = compileSeccomp({ arch: 'x86_64', extraDeny: ['chmod', 'fchmodat', 'chmod'], logOnly: false });
    assert.equal(run(before, 'x86_64', 'chmod').action, 'allow');
    assert.deepEqual(run(program, 'x86_64', 'chmod'), { action: 'errno', errno: EPERM });
    assert.deepEqual(run(program, 'x86_64', 'fchmodat'), { action: 'errno', errno: EPERM });
    assert.equal(run(program, 'x86_64', 'fchmod').action, 'allow');
    assert.equal(summary.filter((line) => line === 'deny (EPERM) chmod: denied by the policy (syscalls.extraDeny)').length, 1);
  });

  it('denies an argument-checked syscall whatever its arguments', () => {
    const program = compiled('aarch64', false, ['clone', 'ioctl']);
    assert.deepEqual(run(program, 'aarch64', 'clone', [THREAD_FLAGS]), { action: 'errno', errno: EPERM });
    assert.deepEqual(run(program, 'aarch64', 'ioctl', [0n, 0x5401n]), { action: 'errno', errno: EPERM });
  });

  it('keeps the default errno of a syscall already denied', () => {
    const program = compiled('x86_64', false, ['clone3', 'ptrace']);
    assert.deepEqual(run(program, 'x86_64', 'clone3'), { action: 'errno', errno: ENOSYS });
    assert.deepEqual(run(program, 'x86_64', 'ptrace'), { action: 'errno', errno: EPERM });
  });

  it('accepts a name that exists only on the other architecture, with nothing to deny', () => {
    const { program, summary } = compileSeccomp({ arch: 'aarch64', extraDeny: ['iopl'], logOnly: false });
    assert.deepEqual(program, compiled('aarch64'));
    assert.ok(summary.some((line) => line.startsWith('nothing to deny for iopl (syscalls.extraDeny)')));
  });

  it('refuses an unknown name with BRIG_POLICY_INVALID', () => {
    for (const arch of ARCH_LIST) {
      assert.throws(() => compileSeccomp({ arch, extraDeny: ['read', 'foo'], logOnly: false }), (error: unknown) => {
        assert.ok(error instanceof BrigError);
        assert.equal(error.code, 'BRIG_POLICY_INVALID');
        assert.equal(error.message, "unknown syscall 'foo' in syscalls.extraDeny");
        assert.equal(error.hint, "use a Linux syscall name for this architecture, e.g. 'ptrace'");
        return true;
      });
    }
    // Inherited object properties are not syscalls.
    assert.throws(() => compileSeccomp({ arch: 'x86_64', extraDeny: ['toString'], logOnly: false }), BrigError);
    assert.throws(() => compileSeccomp({ arch: 'x86_64', extraDeny: ['__proto__'], logOnly: false }), BrigError);
  });
});

describe('seccomp list against Docker\'s default profile', () => {
  for (const arch of ARCH_LIST) {
    it(`${arch}: every syscall Docker does not allow unconditionally is denied`, () => {
      const program = compiled(arch);
      const allowed = new Set([...DOCKER_ALLOW_ALWAYS, ...DOCKER_ALLOW_MIN_KERNEL_4_8, ...DOCKER_ALLOW_ARCH[arch]]);
      const dockerDenies = names(arch).filter((name) => !allowed.has(name) && !['socket', 'personality', 'clone', 'clone3'].includes(name));
      assert.ok(dockerDenies.length > 40, `${dockerDenies.length} names`);
      for (const name of dockerDenies) {
        assert.equal(run(program, arch, name, [0n, 0n, 0n]).action, 'errno', `${name} is not allowed by Docker without capabilities`);
      }
      // Docker's argument rules hold too.
      assert.equal(run(program, arch, 'socket', [BigInt(DOCKER_CONDITIONAL.socketDeniedFamily)]).action, 'errno');
      assert.equal(run(program, arch, 'personality', [0x400000n]).action, 'errno');
      for (const flag of Object.values(CLONE_NEW_FLAGS)) {
        assert.equal(DOCKER_CONDITIONAL.cloneDeniedMask & flag, flag);
        assert.equal(run(program, arch, 'clone', [BigInt(flag)]).action, 'errno');
      }
      assert.deepEqual(run(program, arch, 'clone3'), { action: 'errno', errno: DOCKER_CONDITIONAL.clone3Errno });
    });
  }

  it('docs/seccomp.md names every syscall Docker allows and brig denies', () => {
    const docs = readFileSync(new URL('../../../docs/seccomp.md', import.meta.url), 'utf8');
    const extras = new Set<string>();
    for (const arch of ARCH_LIST) {
      const program = compiled(arch);
      const allowed = new Set([...DOCKER_ALLOW_ALWAYS, ...DOCKER_ALLOW_MIN_KERNEL_4_8, ...DOCKER_ALLOW_ARCH[arch]]);
      for (const name of names(arch)) {
        const conditional = DENY_RULES.some((rule) => rule.name === name && rule.args);
        if (allowed.has(name) && (conditional || run(program, arch, name).action !== 'allow')) extras.add(name);
      }
    }
    assert.deepEqual([...extras].sort(), [
      'add_key', 'chmod', 'creat', 'fchmod', 'fchmodat', 'fchmodat2', 'ioctl', 'keyctl', 'mknod', 'mknodat', 'name_to_handle_at', 'open', 'openat', 'openat2',
      'process_vm_readv', 'process_vm_writev', 'ptrace', 'request_key',
    ]);
    for (const name of extras) assert.ok(docs.includes(`\`${name}\``), `docs/seccomp.md should name ${name}`);
  });

  it('every rule names a syscall of at least one table, once', () => {
    const seen = new Set<string>();
    for (const rule of DENY_RULES) {
      assert.ok(ARCH_LIST.some((arch) => ARCHES[arch].syscalls[rule.name] !== undefined), rule.name);
      assert.ok(!seen.has(rule.name), `${rule.name} twice`);
      assert.ok(rule.reason.length > 10, rule.name);
      seen.add(rule.name);
    }
  });
});

describe('seccomp syscall tables', () => {
  for (const arch of ARCH_LIST) {
    it(`${arch}: last and unassigned match the table`, () => {
      const info = ARCHES[arch];
      const numbers = Object.values(info.syscalls);
      assert.equal(new Set(numbers).size, numbers.length, 'numbers are unique');
      assert.equal(Math.max(...numbers), info.last);
      const missing: number[] = [];
      for (let n = 0; n <= info.last; n++) if (!numbers.includes(n)) missing.push(n);
      const declared = info.unassigned.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i));
      assert.deepEqual(declared, missing);
    });
  }

  it('holds numbers from the kernel\'s tables', () => {
    assert.equal(nr('x86_64', 'read'), 0);
    assert.equal(nr('x86_64', 'ptrace'), 101);
    assert.equal(nr('x86_64', 'clone3'), 435);
    assert.equal(nr('x86_64', 'listns'), 470);
    assert.equal(nr('aarch64', 'io_setup'), 0);
    assert.equal(nr('aarch64', 'clone'), 220);
    assert.equal(nr('aarch64', 'ptrace'), 117);
    assert.equal(nr('aarch64', 'mseal'), 462);
    assert.equal(ARCHES.aarch64.syscalls.open, undefined, 'aarch64 has openat only');
  });

  it('hostSeccompArch names this host', () => {
    const expected = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : undefined;
    if (expected) assert.equal(hostSeccompArch(), expected);
    else assert.throws(() => hostSeccompArch(), BrigError);
  });
});

describe('seccomp interpreter', () => {
  const ld = (offset: number) => (asm: Assembler) => asm.load(offset);

  function program(...steps: ((asm: Assembler) => unknown)[]): Buffer {
    const asm = new Assembler();
    for (const step of steps) step(asm);
    return asm.program();
  }

  it('refuses what the kernel refuses at load time', () => {
    const refused: [string, Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['misaligned load', program(ld(2), (a) => a.ret(0))],
      ['load past seccomp_data', program(ld(64), (a) => a.ret(0))],
      ['half-word load', program((a) => a.emit(BPF_LD | BPF_H | BPF_ABS, 0), (a) => a.ret(0))],
      ['BPF_MOD', program((a) => a.emit(BPF_ALU | BPF_MOD | BPF_K, 3), (a) => a.ret(0))],
      ['division by constant zero', program((a) => a.emit(BPF_ALU | BPF_DIV | BPF_K, 0), (a) => a.ret(0))],
      ['shift by 32', program((a) => a.emit(BPF_ALU | BPF_LSH | BPF_K, 32), (a) => a.ret(0))],
      ['no return at the end', program(ld(0))],
      ['jump past the end', program(ld(0), (a) => a.emit(BPF_JMP | BPF_JEQ | BPF_K, 1, 5, 0), (a) => a.ret(0))],
      ['ja past the end', program((a) => a.ja(1), (a) => a.ret(0))],
      ['scratch read before store', program((a) => a.emit(BPF_LD | BPF_MEM, 0), (a) => a.ret(0))],
      ['scratch index out of range', program((a) => a.emit(BPF_ST, 16), (a) => a.ret(0))],
      ['truncated instruction', Buffer.alloc(12)],
    ];
    for (const [what, code] of refused) assert.throws(() => evaluateSeccomp(code, { arch: 0, nr: 0 }), Error, what);
  });

  it('computes like the kernel: 32-bit unsigned ALU, scratch memory, X register, ret A', () => {
    const sum = program(
      ld(16), // args[0] low
      (a) => a.emit(BPF_ALU | BPF_ADD | BPF_K, 0xffffffff), // wraps
      (a) => a.emit(BPF_ST, 3),
      (a) => a.emit(BPF_LDX | BPF_MEM, 3),
      (a) => a.emit(BPF_LD | BPF_IMM, 0x50000),
      (a) => a.emit(BPF_ALU | BPF_ADD | BPF_X, 0),
      (a) => a.emit(BPF_RET | BPF_A, 0),
    );
    assert.deepEqual(evaluateSeccomp(sum, { arch: 0, nr: 0, args: [8n] }), { action: 'errno', errno: 7 });
    const neg = program((a) => a.emit(BPF_LD | BPF_IMM, 1), (a) => a.emit(BPF_ALU | BPF_NEG, 0), (a) => a.emit(BPF_ALU | BPF_AND | BPF_K, 0xffff0000), (a) => a.emit(BPF_RET | BPF_A, 0));
    assert.deepEqual(evaluateSeccomp(neg, { arch: 0, nr: 0 }), { action: 'kill_process' }, '0xffff0000 is an unknown action: the kernel kills');
    const tax = program(ld(4), (a) => a.emit(BPF_MISC | BPF_TAX, 0), (a) => a.emit(BPF_LD | BPF_IMM, 0), (a) => a.emit(BPF_MISC | BPF_TXA, 0), (a) => a.emit(BPF_JMP | BPF_JGT | BPF_K, 5, 0, 1), (a) => a.ret(0x7fff0000), (a) => a.ret(0x00030000));
    assert.deepEqual(evaluateSeccomp(tax, { arch: 6, nr: 0 }), { action: 'allow' });
    assert.deepEqual(evaluateSeccomp(tax, { arch: 5, nr: 0 }), { action: 'trap' });
    const hiWord = program(ld(20), (a) => a.emit(BPF_RET | BPF_A, 0));
    assert.deepEqual(evaluateSeccomp(hiWord, { arch: 0, nr: 0, args: [0x0005002a00000000n] }), { action: 'errno', errno: 42 });
    const ip = program(ld(12), (a) => a.emit(BPF_RET | BPF_A, 0));
    assert.deepEqual(evaluateSeccomp(ip, { arch: 0, nr: 0, instructionPointer: 0x7ff0000000000000n }), { action: 'trace' });
  });

  it('maps return values as __seccomp_filter does', () => {
    const cases: [number, object][] = [
      [0x80000000, { action: 'kill_process' }], [0x00000000, { action: 'kill_thread' }], [0x00030000, { action: 'trap' }],
      [0x00050001, { action: 'errno', errno: 1 }], [0x0005ffff, { action: 'errno', errno: 4095 }], [0x7fc00000, { action: 'errno', errno: ENOSYS }],
      [0x7ff00000, { action: 'trace' }], [0x7ffc0000, { action: 'log' }], [0x7fff0000, { action: 'allow' }], [0x12340000, { action: 'kill_process' }],
    ];
    for (const [value, expected] of cases) assert.deepEqual(evaluateSeccomp(program((a) => a.ret(value)), { arch: 0, nr: 0 }), expected, value.toString(16));
  });

  it('returns 0 (kill thread) on division by a zero X, as the kernel\'s translation does', () => {
    const div = program((a) => a.emit(BPF_LDX | BPF_W | BPF_IMM, 0), (a) => a.emit(BPF_LD | BPF_IMM, 10), (a) => a.emit(BPF_ALU | BPF_DIV | BPF_X, 0), (a) => a.ret(0x7fff0000));
    assert.deepEqual(evaluateSeccomp(div, { arch: 0, nr: 0 }), { action: 'kill_thread' });
  });
});

/** Runs perl under bwrap with a compiled filter on fd 3, as the jail does. */
async function underBwrap(program: Buffer, perl: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawn('/usr/bin/bwrap', [
    '--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--seccomp', '3',
    '--', '/usr/bin/perl', '-e', perl,
  ], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  try {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    (child.stdio[3] as Writable).end(program);
    return { ...(await closed), stdout, stderr };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** A perl script that makes each syscall and prints "name OK ret" or "name ERR errno message". */
function perlCalls(calls: [label: string, nr: number, ...args: (number | string)[]][]): string {
  const lines = calls.map(([label, n, ...args]) => `t(${JSON.stringify(label)}, ${[n, ...args].map((a) => (typeof a === 'string' ? JSON.stringify(a) : String(a))).join(', ')});`);
  return [
    // syscall(NUMBER, LIST): the number must be a scalar of its own (syscall(@a) would pass the array's length).
    'sub t { my ($n, $nr, @a) = @_; $! = 0; my $r = syscall($nr, @a); print "$n ", ($r == -1 ? "ERR " . ($! + 0) . " $!" : "OK $r"), "\\n"; }',
    ...lines,
    'open my $fh, "<", "/proc/self/status" or die; while (<$fh>) { print "status $_" if /^Seccomp/ }',
  ].join('\n');
}

function results(stdout: string): Map<string, string> {
  return new Map(stdout.trim().split('\n').map((line) => {
    const space = line.indexOf(' ');
    return [line.slice(0, space), line.slice(space + 1)] as [string, string];
  }));
}

describe('seccomp in the real kernel (bwrap --seccomp)', () => {
  const missing = ['/usr/bin/bwrap', '/usr/bin/perl'].filter((path) => !existsSync(path));
  const skip = missing.length > 0 ? `needs ${missing.join(' and ')}` : false;
  const arch = skip ? 'x86_64' : hostSeccompArch();

  it('the kernel accepts the program (bwrap runs true)', { skip }, async () => {
    for (const logOnly of [false, true]) {
      const child = spawn('/usr/bin/bwrap', ['--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--seccomp', '3', '--', '/usr/bin/true'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
      try {
        let stderr = '';
        child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const closed = new Promise<number | null>((resolve, reject) => {
          child.on('error', reject);
          child.on('close', (code) => resolve(code));
        });
        (child.stdio[3] as Writable).end(compiled(arch, logOnly));
        assert.equal(await closed, 0, stderr);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    }
  });

  it('denied syscalls fail with EPERM or ENOSYS, allowed ones run, and the filter is in place', { skip }, async () => {
    const n = (name: string) => nr(arch, name);
    const script = perlCalls([
      ['getpid', n('getpid')],
      ['ptrace', n('ptrace'), 0, 0, 0, 0],
      ['keyctl', n('keyctl'), 0, 0, 0, 0, 0],
      ['unshare_newuser', n('unshare'), CLONE_NEW_FLAGS.CLONE_NEWUSER],
      ['mount', n('mount'), 'none', '/tmp', 'tmpfs', 0, 0],
      ['bpf', n('bpf'), 0, 0, 0],
      ['io_uring_setup', n('io_uring_setup'), 1, 0],
      ['clone3', n('clone3'), 0, 0],
      ['tiocsti', n('ioctl'), 0, 0x5412, 'x'],
      ['tcgets', n('ioctl'), 0, 0x5401, 'x'.repeat(64)],
      ['unknown', ARCHES[arch].last + 1],
      ...(arch === 'x86_64' ? [['x32_getpid', 0x40000000 | n('getpid')] as [string, number]] : []),
    ]);
    const { code, signal, stdout, stderr } = await underBwrap(compiled(arch), script);
    assert.equal(code, 0, `perl exited ${code} ${signal}: ${stderr}`);
    const got = results(stdout);
    assert.match(got.get('getpid') ?? '', /^OK \d+$/);
    for (const name of ['ptrace', 'keyctl', 'unshare_newuser', 'mount', 'bpf', 'io_uring_setup', 'tiocsti']) {
      assert.equal(got.get(name), 'ERR 1 Operation not permitted', name);
    }
    for (const name of ['clone3', 'unknown', ...(arch === 'x86_64' ? ['x32_getpid'] : [])]) {
      assert.equal(got.get(name), 'ERR 38 Function not implemented', name);
    }
    // stdin is /dev/null: the kernel, not the filter, answers TCGETS.
    assert.equal(got.get('tcgets'), 'ERR 25 Inappropriate ioctl for device');
    assert.match(stdout, /^status Seccomp:\t2$/m);
    assert.match(stdout, /^status Seccomp_filters:\t1$/m);
  });

  it('the kernel gives every syscall the filter denies the errno the interpreter predicts', { skip }, async () => {
    // Safe to call with zero arguments: a denied syscall never reaches the kernel's implementation.
    // Except uprobe: the kernel lets it past seccomp unfiltered (its own uprobe trampoline calls it),
    // so it reaches sys_uprobe, which refuses a caller that is not the trampoline.
    const program = compiled(arch);
    const calls: [string, number][] = names(arch)
      .filter((name) => run(program, arch, name).action === 'errno' && name !== 'uprobe')
      .map((name) => [name, nr(arch, name)]);
    assert.ok(calls.length > 60);
    const { code, stdout, stderr } = await underBwrap(program, perlCalls(calls));
    assert.equal(code, 0, stderr);
    const got = results(stdout);
    for (const [name] of calls) {
      const { errno } = run(program, arch, name);
      assert.match(got.get(name) ?? '', new RegExp(`^ERR ${errno} `), name);
    }
  });

  it('log-only mode lets a denied syscall run', { skip }, async () => {
    const script = perlCalls([['unshare_none', nr(arch, 'unshare'), 0], ['getpid', nr(arch, 'getpid')]]);
    const strict = await underBwrap(compiled(arch), script);
    const logging = await underBwrap(compiled(arch, true), script);
    assert.equal(results(strict.stdout).get('unshare_none'), 'ERR 1 Operation not permitted', strict.stderr);
    assert.equal(results(logging.stdout).get('unshare_none'), 'OK 0', logging.stderr);
    assert.match(logging.stdout, /^status Seccomp:\t2$/m);
  });
});

describe("seccomp for brig's host helpers (the VM tier's virtiofsd)", () => {
  const EPERM = 1;
  for (const arch of ARCH_LIST) {
    it(`${arch}: the jail's list with chroot, and unshare of CLONE_FS or CLONE_FILES alone; every namespace, mount and set-id mode still refused`, () => {
      const program = compileSeccomp({ arch, extraDeny: [], logOnly: false, profile: 'host-helper' }).program;
      assert.deepEqual(run(program, arch, 'chroot'), { action: 'allow' });
      assert.deepEqual(run(program, arch, 'unshare', [0x200n]), { action: 'allow' });
      assert.deepEqual(run(program, arch, 'unshare', [0x600n]), { action: 'allow' });
      for (const flags of [0x10000000n, 0x20000n, 0x200n | 0x40000000n]) assert.deepEqual(run(program, arch, 'unshare', [flags]), { action: 'errno', errno: EPERM }, `unshare ${flags.toString(16)}`);
      assert.deepEqual(run(program, arch, 'mount'), { action: 'errno', errno: EPERM });
      assert.deepEqual(run(program, arch, 'fchmodat', [0n, 0n, 0o4755n]), { action: 'errno', errno: EPERM });
      assert.deepEqual(run(program, arch, 'fchmodat', [0n, 0n, 0o755n]), { action: 'allow' });
      // The jail's own filter is unchanged.
      assert.deepEqual(run(compiled(arch), arch, 'chroot'), { action: 'errno', errno: EPERM });
      assert.deepEqual(run(compiled(arch), arch, 'unshare', [0x200n]), { action: 'errno', errno: EPERM });
    });
  }
});
