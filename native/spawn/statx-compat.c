// brig-statx.so: preloaded into gVisor sandboxes (src/drivers/gvisor).
//
// Debian's runsc (0.0~20221219) answers statx(2) with EINVAL whenever the
// flags hold AT_NO_AUTOMOUNT, which it does not know. bookworm's coreutils
// passes it on every call: `ls`, `stat` and `cp` fail with "cannot access
// '/': Invalid argument". Inside gVisor nothing is ever automounted, so the
// flag changes nothing there: this statx() drops it and asks the Sentry.
// Statically linked programs, and programs that scrub LD_PRELOAD, are not
// helped; newer runsc releases accept the flag and need none of this.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
  return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}
