// brig-exec [--rlimit NAME=SOFT:HARD]... --keep-fds N -- PROGRAM [ARGS...]
//
// The launcher between brig and bubblewrap. It sets resource limits (so they
// hold from the jail's first instruction; Node cannot call setrlimit) and
// closes every file descriptor above N before it execs PROGRAM: an fd that
// brig's own caller left open without close-on-exec (a shell's `20<file`, a
// daemon's launcher pipe) must not reach the jail. brig passes N = the number
// of entries in its spawn stdio array - 1, so exactly what brig hands over
// survives. NAME is one of NOFILE NPROC CORE FSIZE AS CPU; a value is a
// number or "unlimited". Exit codes: 125 usage or setup error, 126 PROGRAM
// not executable, 127 PROGRAM not found.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void fatal(const char *what, const char *detail) {
  fprintf(stderr, "brig-exec: %s: %s\n", what, detail);
  exit(125);
}

static const struct { const char *name; int resource; } LIMITS[] = {
  {"NOFILE", RLIMIT_NOFILE}, {"NPROC", RLIMIT_NPROC}, {"CORE", RLIMIT_CORE},
  {"FSIZE", RLIMIT_FSIZE}, {"AS", RLIMIT_AS}, {"CPU", RLIMIT_CPU},
};

static rlim_t parse_value(const char *text, const char *spec) {
  if (strcmp(text, "unlimited") == 0) return RLIM_INFINITY;
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-') fatal("bad rlimit value", spec);
  return (rlim_t)value;
}

// "NOFILE=1024:4096"
static void set_limit(const char *spec) {
  char copy[128];
  if (strlen(spec) >= sizeof copy) fatal("rlimit too long", spec);
  strcpy(copy, spec);
  char *equals = strchr(copy, '='), *colon = equals ? strchr(equals, ':') : NULL;
  if (!equals || !colon) fatal("rlimit must be NAME=SOFT:HARD", spec);
  *equals = *colon = '\0';
  for (size_t i = 0; i < sizeof LIMITS / sizeof LIMITS[0]; i++) {
    if (strcmp(copy, LIMITS[i].name) != 0) continue;
    struct rlimit limit = {parse_value(equals + 1, spec), parse_value(colon + 1, spec)};
    if (setrlimit(LIMITS[i].resource, &limit) < 0) fatal(spec, strerror(errno));
    return;
  }
  fatal("unknown rlimit", spec);
}

// Every fd above keep: close_range where the kernel has it (5.9+), else each fd /proc lists.
static void close_above(int keep) {
  if (syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0) == 0) return;
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) fatal("cannot list open fds", strerror(errno));
  int self = dirfd(dir);
  int fds[4096], count = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) && count < 4096) {
    int fd = atoi(entry->d_name);
    if (entry->d_name[0] != '.' && fd > keep && fd != self) fds[count++] = fd;
  }
  closedir(dir);
  for (int i = 0; i < count; i++) close(fds[i]);
  if (count == 4096) close_above(keep); // more than one batch: list again
}

int main(int argc, char **argv) {
  int keep = -1, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) fatal("missing value for", argv[i]);
    if (strcmp(argv[i], "--rlimit") == 0) set_limit(argv[++i]);
    else if (strcmp(argv[i], "--keep-fds") == 0) {
      char *end;
      long value = strtol(argv[++i], &end, 10);
      if (*end || end == argv[i] || value < 2 || value > INT_MAX - 1) fatal("--keep-fds must be a number >= 2", argv[i]);
      keep = (int)value;
    } else fatal("unknown option", argv[i]);
  }
  if (keep < 0) fatal("usage", "brig-exec [--rlimit NAME=SOFT:HARD]... --keep-fds N -- PROGRAM [ARGS...]");
  if (i >= argc) fatal("usage", "no program after --");
  close_above(keep);
  execvp(argv[i], argv + i);
  int err = errno;
  fprintf(stderr, "brig-exec: cannot run %s: %s\n", argv[i], strerror(err));
  return err == ENOENT ? 127 : 126;
}
