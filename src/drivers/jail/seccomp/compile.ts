/**
 * Turns the deny list (rules.ts) plus the policy's extraDeny into one classic
 * BPF program, checked in this order:
 *
 *   1. Architecture. seccomp_data.arch must be the host's native value; a
 *      syscall made through another ABI (int 0x80 on x86_64, AArch32 on arm64)
 *      has other numbers, so the process is killed (SECCOMP_RET_KILL_PROCESS).
 *   2. x32 (x86_64 only). x32 syscalls share AUDIT_ARCH_X86_64 and mark their
 *      numbers with bit 0x40000000; they fail with ENOSYS. Why ENOSYS and not
 *      a kill: it is the exact answer of a kernel without x32 support, which
 *      is what Debian, Ubuntu and Fedora ship (compiled out or off by default),
 *      so nothing legitimate can tell the difference, and the syscall never
 *      runs either way: a kill would add no safety, only a crash for a program
 *      that probes for x32.
 *   3. The syscall number, by binary search over ranges of numbers that share
 *      one outcome: allow, deny with an errno, or jump to a small block that
 *      checks arguments (clone, ioctl, personality, socket). Numbers the
 *      Linux 6.19 table does not name (gaps and anything above the last
 *      number) are denied with ENOSYS: a syscall newer than brig's table is
 *      refused as an older kernel would refuse it, never allowed by accident.
 *
 * BPF conditional jumps reach at most 255 instructions ahead. The search tree
 * is built bottom-up, so each node knows the size of its left subtree; when
 * that is over 255, the node jumps to a `ja` (32-bit offset) trampoline. Leaf
 * jumps to argument blocks are `ja` too. Nothing is iterated to a fixed point.
 *
 * Log-only mode turns every deny of step 3 into SECCOMP_RET_LOG. Steps 1 and
 * 2 stay as they are: they are not rules one tunes, and letting a foreign ABI
 * through would allow syscalls whose numbers the list does not describe.
 */

import { BrigError } from '../../../protocol/index.ts';
import { ARCHES, isSeccompArch, syscallNumber } from './arch.ts';
import {
  BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, ERRNO, MAX_COND_JUMP, MAX_INSNS, SECCOMP_DATA,
  SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_LOG, X32_SYSCALL_BIT,
  argLowOffset, encode, ja, jump, loadWord, ret,
} from './bpf.ts';
import type { ErrnoName, Insn } from './bpf.ts';
import { DENY_RULES } from './rules.ts';
import type { ArgCheck, DenyRule } from './rules.ts';
import type { CompiledSeccomp, SeccompArch, SeccompOptions } from './types.ts';

/**
 * What the search tree decides for a range of syscall numbers, as one number
 * so that building the ranges allocates nothing: a value >= 0 is a
 * SECCOMP_RET_* to return, a value < 0 is -1 - nr, "jump to nr's argument block".
 */
type Outcome = number;
const argsOutcome = (nr: number): Outcome => -1 - nr;

/** Ranges of syscall numbers: range i starts at starts[i] and ends where range i + 1 starts. */
interface Ranges {
  starts: number[];
  outcomes: Outcome[];
}

/** An instruction, possibly a `ja` whose offset is filled in once the argument blocks are placed. */
interface Pending {
  insn: Insn;
  jaToArgsOf?: number;
}

export function compileSeccomp(options: SeccompOptions): CompiledSeccomp {
  if (!isSeccompArch(options.arch)) {
    throw new BrigError('BRIG_JAIL_SETUP', `seccomp: no syscall table for architecture '${String(options.arch)}'`, 'use x86_64 or aarch64');
  }
  const arch = options.arch;
  const info = ARCHES[arch];
  const denyRet = (errno: ErrnoName): number => (options.logOnly ? SECCOMP_RET_LOG : SECCOMP_RET_ERRNO | ERRNO[errno]);
  const verb = (errno: ErrnoName): string => (options.logOnly ? `log (instead of ${errno})` : `deny (${errno})`);

  const summary: string[] = [
    `kill process: syscalls from any ABI but native ${arch} (seccomp_data.arch != ${hex(info.auditArch)})`,
  ];
  if (info.hasX32) summary.push(`deny (ENOSYS): x32 ABI syscalls (nr & ${hex(X32_SYSCALL_BIT)}), as a kernel without x32 answers`);

  const unknownRet = denyRet('ENOSYS');
  const rules = [...DENY_RULES, ...extraRules(arch, options.extraDeny, summary)];
  const unconditional = new Map<number, number>();
  const conditional = new Map<number, DenyRule[]>();
  for (const rule of rules) {
    const nr = syscallNumber(arch, rule.name);
    if (nr === undefined || unconditional.has(nr)) continue;
    const errno = rule.errno ?? 'EPERM';
    if (rule.args) {
      conditional.set(nr, [...(conditional.get(nr) ?? []), rule]);
      summary.push(`${verb(errno)} ${rule.name} when ${describe(rule.args)}: ${rule.reason}`);
    } else {
      unconditional.set(nr, denyRet(errno));
      conditional.delete(nr);
      summary.push(`${verb(errno)} ${rule.name}: ${rule.reason}`);
    }
  }

  // Outcome of every number up to the table's last, in plain arrays: cheap while the code is still cold.
  const numbers = Object.values(info.syscalls);
  let last = 0;
  for (const nr of numbers) if (nr > last) last = nr;
  const byNr = new Array<Outcome>(last + 1).fill(unknownRet);
  for (const nr of numbers) byNr[nr] = SECCOMP_RET_ALLOW;
  for (const [nr, denied] of unconditional) byNr[nr] = denied;
  for (const nr of conditional.keys()) byNr[nr] = argsOutcome(nr);
  summary.push(`${verb('ENOSYS')} numbers the Linux 6.19 ${arch} table does not name (unassigned, or above ${last}): unknown to brig, refused as a kernel without them would refuse them`);

  const ranges: Ranges = { starts: [0], outcomes: [byNr[0] as Outcome] };
  for (let nr = 1; nr <= last + 1; nr++) {
    const outcome = nr <= last ? (byNr[nr] as Outcome) : unknownRet;
    if (outcome !== ranges.outcomes[ranges.outcomes.length - 1]) {
      ranges.starts.push(nr);
      ranges.outcomes.push(outcome);
    }
  }

  const code: Pending[] = [
    { insn: loadWord(SECCOMP_DATA.arch) },
    { insn: jump(BPF_JMP | BPF_JEQ | BPF_K, info.auditArch, 1, 0) },
    { insn: ret(SECCOMP_RET_KILL_PROCESS) },
    { insn: loadWord(SECCOMP_DATA.nr) },
  ];
  if (info.hasX32) {
    code.push({ insn: jump(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, 1) }, { insn: ret(SECCOMP_RET_ERRNO | ERRNO.ENOSYS) });
  }
  searchTree(ranges, 0, ranges.starts.length - 1, code);

  const blockAt = new Map<number, number>();
  for (const [nr, checks] of [...conditional].sort(([a], [b]) => a - b)) {
    blockAt.set(nr, code.length);
    for (const check of checks) code.push(...argBlock(check.args as ArgCheck, denyRet(check.errno ?? 'EPERM')));
    code.push({ insn: ret(SECCOMP_RET_ALLOW) });
  }

  const insns = code.map(({ insn, jaToArgsOf }, pc) => {
    if (jaToArgsOf === undefined) return insn;
    return ja((blockAt.get(jaToArgsOf) as number) - pc - 1);
  });
  if (insns.length > MAX_INSNS) {
    throw new BrigError(
      'BRIG_POLICY_INVALID',
      `seccomp: the filter needs ${insns.length} instructions, over the kernel's limit of ${MAX_INSNS}`,
      'deny fewer syscalls in syscalls.extraDeny',
    );
  }
  return { program: encode(insns), summary };
}

/** Rules for the policy's extraDeny names; a name no supported architecture knows is a policy error. */
function extraRules(arch: SeccompArch, names: readonly string[], summary: string[]): DenyRule[] {
  const rules: DenyRule[] = [];
  for (const name of new Set(names)) {
    if (syscallNumber(arch, name) !== undefined) {
      rules.push({ name, reason: 'denied by the policy (syscalls.extraDeny)' });
      continue;
    }
    const elsewhere = (Object.keys(ARCHES) as SeccompArch[]).find((other) => syscallNumber(other, name) !== undefined);
    if (elsewhere === undefined) {
      throw new BrigError('BRIG_POLICY_INVALID', `unknown syscall '${name}' in syscalls.extraDeny`, "use a Linux syscall name for this architecture, e.g. 'ptrace'");
    }
    summary.push(`nothing to deny for ${name} (syscalls.extraDeny): ${arch} has no such syscall, only ${elsewhere}`);
  }
  return rules;
}

/**
 * Binary search over ranges lo..hi with the syscall number in A, appended to
 * `out`. Each internal node is `jge #start` of its right half; the left half
 * follows it, then the right half.
 */
function searchTree(ranges: Ranges, lo: number, hi: number, out: Pending[]): void {
  if (lo === hi) {
    const outcome = ranges.outcomes[lo] as Outcome;
    out.push(outcome >= 0 ? { insn: ret(outcome) } : { insn: ja(0), jaToArgsOf: -1 - outcome });
    return;
  }
  const mid = (lo + hi + 1) >> 1;
  const start = ranges.starts[mid] as number;
  const leftSize = treeSize(mid - lo);
  if (leftSize <= MAX_COND_JUMP) {
    out.push({ insn: jump(BPF_JMP | BPF_JGE | BPF_K, start, leftSize, 0) });
  } else {
    // Too far for jt: jump to a trampoline that jumps over the left half.
    out.push({ insn: jump(BPF_JMP | BPF_JGE | BPF_K, start, 0, 1) }, { insn: ja(leftSize) });
  }
  searchTree(ranges, lo, mid - 1, out);
  searchTree(ranges, mid, hi, out);
}

/** Instructions searchTree() emits for `count` ranges; it depends on the count alone. */
function treeSize(count: number): number {
  if (count === 1) return 1;
  const left = treeSize(count >> 1);
  return 1 + (left > MAX_COND_JUMP ? 1 : 0) + left + treeSize(count - (count >> 1));
}

/** Load the argument's low 32 bits, test it, return `deny` on a match, else fall through to the next block. */
function argBlock(check: ArgCheck, deny: number): Pending[] {
  const out: Pending[] = [{ insn: loadWord(argLowOffset(check.arg)) }];
  if (check.op === 'hasAnyBit') {
    out.push({ insn: jump(BPF_JMP | BPF_JSET | BPF_K, check.mask, 0, 1) });
  } else {
    // n comparisons, then `ret deny` at index n (relative to the first comparison); the next block starts at n + 1.
    const n = check.values.length;
    check.values.forEach((value, i) => {
      const isLast = i === n - 1;
      const insn = check.op === 'isOneOf'
        ? jump(BPF_JMP | BPF_JEQ | BPF_K, value, n - 1 - i, isLast ? 1 : 0) // match: to the deny
        : jump(BPF_JMP | BPF_JEQ | BPF_K, value, n - i, 0); //                  match: past the deny
      out.push({ insn });
    });
  }
  out.push({ insn: ret(deny) });
  return out;
}

function describe(check: ArgCheck): string {
  const arg = `${check.label} (arg${check.arg}, low 32 bits)`;
  if (check.op === 'hasAnyBit') return `${arg} has any bit of ${hex(check.mask)}`;
  const values = check.values.map(hex).join(', ');
  return check.op === 'isOneOf' ? `${arg} is ${values}` : `${arg} is not ${values}`;
}

function hex(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}
