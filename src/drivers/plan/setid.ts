/**
 * S_ISUID | S_ISGID: a file the host would run with its owner's (or group's)
 * privileges. A sandbox whose files keep host uid 0 (a root-owned workspace;
 * an image's root under gVisor, which maps no ids) could otherwise leave a
 * setuid-root program on the host for any user to run. Every tier refuses a
 * mode with either bit, whichever call sets it.
 */
export const SETID_BITS = 0o6000;

/**
 * Every call that sets a file's mode, and the argument that carries it:
 * chmod and its fd/at forms, and the calls that create a file with a mode
 * (open and openat with O_CREAT or O_TMPFILE, creat, mknod). openat2 passes
 * its mode inside a struct no filter can read: tiers answer it ENOSYS, and
 * glibc and musl fall back to openat, which is checked.
 */
export const MODE_SETTING_CALLS: ReadonlyArray<{ name: string; arg: number }> = [
  { name: 'chmod', arg: 1 }, { name: 'fchmod', arg: 1 }, { name: 'fchmodat', arg: 2 }, { name: 'fchmodat2', arg: 2 },
  { name: 'open', arg: 2 }, { name: 'openat', arg: 3 }, { name: 'creat', arg: 1 }, { name: 'mknod', arg: 1 }, { name: 'mknodat', arg: 2 },
];
