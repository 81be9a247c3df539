// brig-exec [--rlimit NAME=SOFT:HARD]... [--die-with PID] --keep-fds N [IMAGE ROOT] -- PROGRAM [ARGS...]
// (linked statically: envd runs it inside images, whatever libraries they have)
//   --die-with PID: SIGKILL when the parent dies (it survives the exec), and at
//   once when the parent is no longer PID: a parent killed between the fork and
//   the prctl would otherwise leave PROGRAM running for good (setpriv
//   --pdeathsig has that race).
//   --supervise (with --die-with): brig-exec stays, as PROGRAM's parent, and
//   SIGKILLs it when its own parent dies, then ends with PROGRAM's status. For
//   a PROGRAM that changes its ids (QEMU's -runas): the kernel clears a
//   parent-death signal then.
//   --as UID:GID: become that user (groups: GID only) before the exec; envd,
//   root in an image sandbox, starts a command as another user this way.
//   IMAGE ROOT: --image-dir DIR --rw-dir DIR --layer PATH... --idmap BASE:COUNT --owner UID:GID
//     [--map-bind SOURCE_FD:TARGET_FD:HOSTUID:HOSTGID]... [--no-link-at PATH]... --userns-fd N --root-fd N
//
// The launcher between brig and bubblewrap. It sets resource limits (so they
// hold from the jail's first instruction; Node cannot call setrlimit) and
// closes every file descriptor above N before it execs PROGRAM: an fd that
// brig's own caller left open without close-on-exec (a shell's `20<file`, a
// daemon's launcher pipe) must not reach the jail. brig passes N = the number
// of entries in its spawn stdio array - 1, so exactly what brig hands over
// survives. NAME is one of NOFILE NPROC CORE FSIZE AS CPU; a value is a
// number or "unlimited". With an image root (image-root.c; brig-exec must
// then run as host root), it first builds the sandbox's user namespace and
// copy-on-write root, hands both on as fds and drops to the sandbox's ids. Exit codes: 125 usage or setup error, 126 PROGRAM
// not executable, 127 PROGRAM not found.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image-root.h"

#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static int parse_fd(const char *text) {
  char *end;
  long value = strtol(text, &end, 10);
  if (*end || end == text || value < 3 || value > INT_MAX - 1) fatal("an fd must be a number >= 3", text);
  return (int)value;
}

// "BASE:COUNT"
static void parse_idmap(const char *text, struct image_root *image) {
  char *end;
  unsigned long long base = strtoull(text, &end, 10);
  if (end == text || *end != ':' || text[0] == '-') fatal("--idmap must be BASE:COUNT", text);
  const char *rest = end + 1;
  unsigned long long count = strtoull(rest, &end, 10);
  if (end == rest || *end || rest[0] == '-' || base == 0 || count == 0 || count > 65536 || base + count > 0xFFFFFFFEULL) fatal("--idmap out of range", text);
  image->id_base = (uid_t)base;
  image->id_count = (unsigned)count;
}

// "UID:GID"
static void become_user(const char *text) {
  char *end;
  unsigned long uid = strtoul(text, &end, 10);
  if (end == text || *end != ':' || text[0] == '-') fatal("--as must be UID:GID", text);
  const char *rest = end + 1;
  unsigned long gid = strtoul(rest, &end, 10);
  if (end == rest || *end || rest[0] == '-' || uid > 0xFFFFFFFEUL || gid > 0xFFFFFFFEUL) fatal("--as must be UID:GID", text);
  gid_t groups[1] = {(gid_t)gid};
  if (setgroups(1, groups) < 0) fatal("setgroups", strerror(errno));
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) fatal("setresgid", strerror(errno));
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) fatal("setresuid", strerror(errno));
  // Leaving root empties the permitted and effective sets; the inheritable one stays as root had it.
  // It grants nothing under no_new_privs, but nothing of root's should follow the user.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct none[2];
  memset(none, 0, sizeof none);
  if (uid != 0 && syscall(SYS_capset, &header, none) < 0) fatal("capset", strerror(errno));
}

// "PID": from now on, `signal` when that parent dies; already orphaned, die now.
static void die_with(const char *text, int signal) {
  char *end;
  long pid = strtol(text, &end, 10);
  if (*end || end == text || pid < 1 || pid > INT_MAX) fatal("--die-with must be a pid", text);
  if (prctl(PR_SET_PDEATHSIG, signal) < 0) fatal("prctl(PR_SET_PDEATHSIG)", strerror(errno));
  if (getppid() != (pid_t)pid) raise(SIGKILL);
}

// --supervise: PROGRAM runs as a child; its parent's death (SIGTERM, the parent-death
// signal here) SIGKILLs it. Returns in the child; the supervisor never returns.
static void supervise(void) {
  sigset_t watched;
  sigemptyset(&watched);
  sigaddset(&watched, SIGTERM);
  sigaddset(&watched, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &watched, NULL) < 0) fatal("sigprocmask", strerror(errno));
  pid_t child = fork();
  if (child < 0) fatal("fork", strerror(errno));
  if (child == 0) {
    if (sigprocmask(SIG_UNBLOCK, &watched, NULL) < 0) fatal("sigprocmask", strerror(errno));
    return;
  }
  for (;;) {
    siginfo_t info;
    if (sigwaitinfo(&watched, &info) < 0) continue;
    if (info.si_signo == SIGTERM) kill(child, SIGKILL);
    int status;
    pid_t ended = waitpid(child, &status, WNOHANG);
    if (ended == child) {
      if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        sigprocmask(SIG_UNBLOCK, &watched, NULL);
        raise(WTERMSIG(status));
      }
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
    }
  }
}

int main(int argc, char **argv) {
  int keep = -1, i = 1;
  const char *die_with_pid = NULL;
  bool supervised = false;
  struct image_root image = {.userns_fd = -1, .root_fd = -1};
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) fatal("missing value for", argv[i]);
    if (strcmp(argv[i], "--rlimit") == 0) set_limit(argv[++i]);
    else if (strcmp(argv[i], "--die-with") == 0) die_with_pid = argv[++i];
    else if (strcmp(argv[i], "--supervise") == 0) {
      supervised = true;  // a flag: no value to skip
    }
    else if (strcmp(argv[i], "--keep-fds") == 0) {
      char *end;
      long value = strtol(argv[++i], &end, 10);
      if (*end || end == argv[i] || value < 2 || value > INT_MAX - 1) fatal("--keep-fds must be a number >= 2", argv[i]);
      keep = (int)value;
    } else if (strcmp(argv[i], "--image-dir") == 0) image.dir = argv[++i];
    else if (strcmp(argv[i], "--as") == 0) become_user(argv[++i]);
    else if (strcmp(argv[i], "--rw-dir") == 0) image.rw_dir = argv[++i];
    else if (strcmp(argv[i], "--layer") == 0) {
      if (image.layer_count == IMAGE_MAX_LAYERS) fatal("too many layers", argv[i + 1]);
      image.layers[image.layer_count++] = argv[++i];
    } else if (strcmp(argv[i], "--idmap") == 0) parse_idmap(argv[++i], &image);
    else if (strcmp(argv[i], "--owner") == 0) {
      const char *text = argv[++i];
      char *end;
      unsigned long uid = strtoul(text, &end, 10), gid;
      if (end == text || *end != ':' || text[0] == '-') fatal("--owner must be UID:GID", text);
      const char *rest = end + 1;
      gid = strtoul(rest, &end, 10);
      if (end == rest || *end || rest[0] == '-' || uid > 0xFFFFFFFEUL || gid > 0xFFFFFFFEUL) fatal("--owner must be UID:GID", text);
      image.owner_uid = (uid_t)uid;
      image.owner_gid = (gid_t)gid;
    } else if (strcmp(argv[i], "--map-bind") == 0) {
      const char *text = argv[++i];
      if (image.bind_count == IMAGE_MAX_BINDS) fatal("too many --map-bind", text);
      unsigned source, target, uid, gid;
      char end;
      if (sscanf(text, "%u:%u:%u:%u%c", &source, &target, &uid, &gid, &end) != 4 || source < 3 || target < 3) fatal("--map-bind must be SOURCE_FD:TARGET_FD:UID:GID", text);
      image.binds[image.bind_count++] = (struct mapped_bind){(int)source, (int)target, (uid_t)uid, (gid_t)gid};
    } else if (strcmp(argv[i], "--no-link-at") == 0) {
      if (image.target_count == IMAGE_MAX_TARGETS) fatal("too many --no-link-at", argv[i + 1]);
      image.targets[image.target_count++] = argv[++i];
    } else if (strcmp(argv[i], "--userns-fd") == 0) image.userns_fd = parse_fd(argv[++i]);
    else if (strcmp(argv[i], "--root-fd") == 0) image.root_fd = parse_fd(argv[++i]);
    else fatal("unknown option", argv[i]);
  }
  if (keep < 0) fatal("usage", "brig-exec [--rlimit NAME=SOFT:HARD]... [--die-with PID [--supervise]] --keep-fds N -- PROGRAM [ARGS...]");
  if (supervised && !die_with_pid) fatal("usage", "--supervise needs --die-with");
  if (die_with_pid) die_with(die_with_pid, supervised ? SIGTERM : SIGKILL);
  if (supervised) supervise();
  if (i >= argc) fatal("usage", "no program after --");
  if (image.dir) {
    for (int b = 0; b < image.bind_count; b++) {
      if (image.binds[b].source_fd > keep || image.binds[b].target_fd > keep) fatal("usage", "--map-bind fds must lie within --keep-fds");
    }
    if (!image.id_count || image.userns_fd < 0 || image.root_fd < 0 || image.userns_fd > keep || image.root_fd > keep || image.userns_fd == image.root_fd) {
      fatal("usage", "--image-dir needs --layer, --idmap, and distinct --userns-fd and --root-fd within --keep-fds");
    }
    make_image_root(&image);
  }
  close_above(keep);
  execvp(argv[i], argv + i);
  int err = errno;
  fprintf(stderr, "brig-exec: cannot run %s: %s\n", argv[i], strerror(err));
  return err == ENOENT ? 127 : 126;
}
