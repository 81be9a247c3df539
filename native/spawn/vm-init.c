// brig-vm-init: pid 1 of a VM tier guest (src/drivers/vm), /init of its initramfs.
//
// The host talks to the guest only over four virtio-serial ports, found by
// name: brig.ctl (records, both ways), brig.stdin, brig.stdout and
// brig.stderr (the command's bytes). In order, brig-vm-init
//   1. mounts devtmpfs, proc and sysfs, and loads the kernel modules listed
//      in /modules.order (from /lib/modules, with finit_module);
//   2. waits (up to 10 s) for the four ports to be named and connected;
//   3. reads the sandbox's config from brig.ctl, up to `end`;
//   4. mounts the root (virtiofs) on /newroot and switches to it, applies
//      the guest-side mounts and the hostname;
//   5. starts the command (its own session; rlimits, groups, gid, uid and cwd
//      set in the child, so pid 1 stays root to reap, signal and power off)
//      with stdout and stderr on their ports, copies brig.stdin into its
//      stdin pipe, obeys `eof` and `signal N` from brig.ctl, reaps every
//      process that ends (pid 1 inherits orphans), and when the command ends
//      writes `exit CODE`;
//   6. kills what is left and powers the VM off (reboot with -no-reboot and
//      reboot=t ends QEMU).
// A failure before the command runs is written as `error MESSAGE` to
// brig.ctl (when it is open) and to /dev/console (the host's log), then the
// VM powers off. pid 1 never returns: that would panic the guest.
//
// Records, both ways: a decimal field count n, NUL, then n NUL-terminated
// strings, the first of which is the record's type. Host to guest:
//   root TAG | mount TYPE SOURCE TARGET FLAGS DATA | hostname NAME | uid N |
//   gid N | groups G... | cwd PATH | env K=V | argv A0 A1... |
//   rlimit NAME SOFT HARD | hold | service N | egress SOCKET PROGRAM ARGS... |
//   tty COLS ROWS | net ADDRESS NETMASK GATEWAY | heartbeat MS | end   (then,
//   while the command runs) eof [N] | signal N | winsize COLS ROWS | poweroff
// Guest to host: exit CODE | exit CODE STDOUT_BYTES STDERR_BYTES (with
// `hold`) | error MESSAGE | alive.
// `heartbeat MS`: `alive` once the config is read, then every MS
// milliseconds until the VM ends, so the host can tell a hung guest (its
// kernel stuck, or pid 1 never scheduled) from a quiet one (heartbeat.ts).
// TAG `initramfs` stays on the initramfs root (tests; no virtiofs there).
// `service N` (a daemon sandbox): a fifth port, brig.service, must be there
// and connected too, and is the command's fd N (4-9): envd serves the host's
// connections over it, multiplexed (src/protocol/mux.ts).
// `egress SOCKET PROGRAM ARGS...` (network allowlist): a port brig.egress
// must be there too. Before the command, the init listens on the unix socket
// SOCKET (given to the sandbox's user; its directory a guest tmpfs, from a
// mount record) and starts PROGRAM in the second layer, in a session of its
// own, with that socket as fd 4 and brig.egress as fd 5: the guest's end of
// the way out (src/drivers/vm/egress-guest.ts), where the command's relay
// connects. The socket listens before the command starts, so nothing races it.
// `net ADDRESS NETMASK GATEWAY` (network.mode host: QEMU's user network on a
// virtio-net device): the modules in /modules.network are loaded, eth0 gets
// the address and is up, the gateway is the default route, lo is up.
// `tty COLS ROWS` (brig run on a terminal): the command gets a terminal of
// the guest's own (a pty of the guest's devpts) as its stdio (the host puts
// `setsid --ctty` before it, inside the second layer, so the terminal's
// signals reach the command's session and not the inner bubblewrap), and the init relays brig.stdin into its master and the master
// into brig.stdout; `winsize` resizes it. brig.stderr carries nothing then.
//
// Each port is its own stream, so nothing orders bytes on one against
// records on another. Two records make up for it: `eof N` closes the
// command's stdin only once N bytes have come from brig.stdin (a bare `eof`
// may overtake them); and `hold` keeps the VM up after the exit record, which
// then counts the output bytes, until the host has read them all and says
// `poweroff`: when the guest powers off, QEMU drops whatever output it still
// holds because the host had not read it yet. The host hanging up brig.stdin
// ends the command's stdin (QEMU drops what it had not passed on); hanging up
// brig.ctl ends the VM.
//
// Static buffers throughout, bounded and checked; no recursion on what the
// host sends. Statically linked: it is the only program the initramfs has.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAX (1024 * 1024)     // one record from the host, whole (argv is one record)
#define FIELDS_MAX 4097              // fields in one record: a type and up to 4096 arguments
#define ARENA_MAX (4 * 1024 * 1024)  // every string the config keeps (untouched pages cost nothing)
#define ENV_MAX 4096
#define MOUNTS_MAX 128
#define GROUPS_MAX 256
#define RLIMITS_MAX 8
#define MESSAGE_MAX 512
#define PORT_WAIT_MS 10000
#define JAIL_MAX 256               // the inner jail's argv (bubblewrap and its options)
#define SECCOMP_MAX (64 * 1024)    // the inner jail's BPF program: fits a pipe's buffer whole
#define OWN_MAX 64                 // directories handed to the sandbox's user (the view's tmpfs)
#define SECCOMP_FD 3               // where the inner bubblewrap reads it (src/drivers/vm/guest.ts)
#define EGRESS_ARGV_MAX 64         // the egress program's argv
#define EGRESS_LISTEN_FD 4         // where it finds its listening socket (src/drivers/vm/egress.ts)
#define EGRESS_PORT_FD 5           // ...and brig.egress
#define HANDED_MAX 2               // fds handed to one program beside its stdio

extern char **environ;

static int console_fd = -1;  // /dev/console: the host's log file
static int ctl_fd = -1, stdin_port = -1, stdout_port = -1, stderr_port = -1;
// brig.service: a daemon sandbox's envd serves the host on it (many streams, src/protocol/mux.ts); a command gets none.
static int service_port = -1;
static bool want_service;  // `service N` came: the port must be there, the host on it
// brig.egress: the guest's way out in allowlist mode, one stream per connection (src/drivers/vm/egress.ts).
static int egress_port = -1;
static bool want_egress;  // `egress …` came
// The kernel's statistics of the output ports (debugfs): bytes_sent, for `hold`.
static int stdout_stats = -1, stderr_stats = -1;

// --- Reporting and the way out -------------------------------------------

static bool write_all(int fd, const char *data, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, data, length);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && errno == EAGAIN) {  // brig.ctl is non-blocking while the command runs
      struct pollfd writable = {.fd = fd, .events = POLLOUT};
      if (poll(&writable, 1, -1) < 0 && errno != EINTR) return false;
      if (writable.revents & (POLLHUP | POLLERR)) return false;  // the host left
      continue;
    }
    if (written <= 0) return false;
    data += written;
    length -= (size_t)written;
  }
  return true;
}

static void say(const char *message) {
  if (console_fd < 0) return;
  char line[MESSAGE_MAX + 32];
  int length = snprintf(line, sizeof line, "brig-vm-init: %s\n", message);
  if (length > 0) write_all(console_fd, line, (size_t)length < sizeof line ? (size_t)length : sizeof line - 1);
}

// A port the host is not connected to yet polls as POLLHUP (and reads as
// EOF). The name arrives before the connection, so a port counts as there
// only once the host is on it: later, a hang-up means the host left.
static bool host_connected(int fd) {
  struct pollfd probe = {.fd = fd, .events = 0};
  return poll(&probe, 1, 0) == 0 || !(probe.revents & POLLHUP);
}

// Writes one record to brig.ctl; false when it cannot (no port, too long, write failed).
static bool send_record(int count, const char *const *fields) {
  if (ctl_fd < 0 || !host_connected(ctl_fd)) return false;  // a write would wait for the host forever
  char record[MESSAGE_MAX * 2];
  int used = snprintf(record, sizeof record, "%d", count);
  if (used < 0) return false;
  size_t length = (size_t)used + 1;  // snprintf's NUL ends the count
  for (int i = 0; i < count; i++) {
    size_t field = strlen(fields[i]) + 1;
    if (length + field > sizeof record) return false;
    memcpy(record + length, fields[i], field);
    length += field;
  }
  return write_all(ctl_fd, record, length);
}

// Ends the VM: whatever still runs is killed, the disks synced, and the
// kernel reboots, which ends QEMU (-no-reboot; reboot=t: no firmware to ask).
__attribute__((noreturn)) static void power_off(void) {
  kill(-1, SIGKILL);
  sync();
  reboot(RB_AUTOBOOT);
  reboot(RB_POWER_OFF);
  say("cannot power off");
  for (;;) pause();  // pid 1 must not exit: that panics the guest
}

// After an `error` record: waits (10 s at most) for the host's `poweroff`, or
// its hang-up. A port's write returns once the data is queued in the guest,
// not once QEMU has taken it: powering off at once could lose the record.
static void await_poweroff(void) {
  static const char poweroff[] = "1\0poweroff";  // the record "1\0poweroff\0"
  char seen[64];
  size_t length = 0;
  for (int waited = 0; waited < 10000;) {
    struct pollfd port = {.fd = ctl_fd, .events = POLLIN};
    int ready = poll(&port, 1, 100);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      waited += 100;
      continue;
    }
    if (port.revents & (POLLHUP | POLLERR)) return;
    if (length == sizeof seen) {
      memmove(seen, seen + sizeof seen / 2, sizeof seen / 2);
      length = sizeof seen / 2;
    }
    ssize_t got = read(ctl_fd, seen + length, sizeof seen - length);
    if (got <= 0) return;
    length += (size_t)got;
    if (memmem(seen, length, poweroff, sizeof poweroff) != NULL) return;  // sizeof counts the final NUL
  }
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *format, ...) {
  char message[MESSAGE_MAX];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  say(message);
  const char *fields[] = {"error", message};
  if (send_record(2, fields)) await_poweroff();
  power_off();
}

// --- Step 1: the guest's own mounts and modules ----------------------------

static void mount_early(const char *type, const char *target) {
  if (mount(type, target, type, MS_NOSUID | MS_NOEXEC, NULL) < 0 && errno != EBUSY) {
    fail("cannot mount %s on %s: %s", type, target, strerror(errno));
  }
}

// fds 0-2 on the console: the kernel found no /dev/console in the initramfs,
// so pid 1 starts without them, and the first files opened would take them.
static void open_console(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int opened = open("/dev/console", O_RDWR | O_NOCTTY);
    if (opened < 0) opened = open("/dev/null", O_RDWR);
    if (opened < 0) power_off();  // nowhere to say it
    if (opened != fd) {
      dup2(opened, fd);
      close(opened);
    }
  }
  console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
}

// The whole of a small file into buffer, NUL-terminated; its length, or -1 (errno set).
static ssize_t read_small_file(const char *path, char *buffer, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t length = 0;
  for (;;) {
    if (length == size - 1) {
      close(fd);
      errno = EFBIG;
      return -1;
    }
    ssize_t got = read(fd, buffer + length, size - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
    if (got == 0) break;
    length += (size_t)got;
  }
  close(fd);
  buffer[length] = '\0';
  return (ssize_t)length;
}

// True when a '/'-separated path has a '.' or '..' component.
static bool has_dot_component(const char *path) {
  for (const char *part = path;; part++) {
    const char *end = strchr(part, '/');
    size_t length = end ? (size_t)(end - part) : strlen(part);
    if ((length == 1 && part[0] == '.') || (length == 2 && part[0] == '.' && part[1] == '.')) return true;
    if (!end) return false;
    part = end;
  }
}

// A module's path under /lib/modules: relative, no empty, '.' or '..' component.
static bool plain_relative(const char *path) {
  return *path && *path != '/' && !strstr(path, "//") && path[strlen(path) - 1] != '/' && !has_dot_component(path);
}

static void find_ports(bool wait);

static void load_modules(const char *list) {
  static char order[64 * 1024];
  if (read_small_file(list, order, sizeof order) < 0) {
    if (errno == ENOENT) return;  // a kernel with its drivers built in needs none
    fail("cannot read %s: %s", list, strerror(errno));
  }
  char *line = order;
  while (*line) {
    char *end = strchr(line, '\n');
    if (end) *end = '\0';
    if (*line) {
      char path[512];
      if (!plain_relative(line) || snprintf(path, sizeof path, "/lib/modules/%s", line) >= (int)sizeof path) {
        fail("bad module name in %s: %.100s", list, line);
      }
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)) {
        int err = errno;
        find_ports(false);  // the console module may be in, and the host listening
        fail("cannot load module %s: %s", line, strerror(err));
      }
      close(fd);
      unlink(path);  // the initramfs stays in RAM; a loaded module's file is needed no more
    }
    if (!end) break;
    line = end + 1;
  }
}

// --- Step 2: the ports, by name ------------------------------------------

// brig.stdin need not have the host on it: a host with nothing to send may
// have closed its end already (QEMU then reports the port closed), and
// the command's stdin simply ends.
static const struct {
  const char *name;
  int *fd;
  int flags;
  int *stats;
  bool host_needed;
  bool *wanted;  // NULL: always; else only when *wanted
} PORTS[] = {
  {"brig.ctl", &ctl_fd, O_RDWR, NULL, true, NULL},
  {"brig.stdin", &stdin_port, O_RDONLY, NULL, false, NULL},
  {"brig.stdout", &stdout_port, O_WRONLY, &stdout_stats, true, NULL},
  {"brig.stderr", &stderr_port, O_WRONLY, &stderr_stats, true, NULL},
  {"brig.service", &service_port, O_RDWR, NULL, true, &want_service},
  {"brig.egress", &egress_port, O_RDWR, NULL, true, &want_egress},
};
#define PORT_COUNT (sizeof PORTS / sizeof PORTS[0])

static long elapsed_ms(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

// One look at /sys/class/virtio-ports: opens each named port not open yet.
static void look_for_ports(void) {
  DIR *dir = opendir("/sys/class/virtio-ports");
  if (!dir) return;  // virtio_console has not registered its class yet
  struct dirent *entry;
  while ((entry = readdir(dir))) {
    if (strncmp(entry->d_name, "vport", 5) != 0 || strlen(entry->d_name) > 32) continue;
    char path[128], name[64];
    snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", entry->d_name);
    ssize_t length = read_small_file(path, name, sizeof name);  // appears when the host has named the port
    if (length <= 0) continue;
    if (name[length - 1] == '\n') name[length - 1] = '\0';
    for (size_t i = 0; i < PORT_COUNT; i++) {
      if (*PORTS[i].fd >= 0 || strcmp(name, PORTS[i].name) != 0) continue;
      snprintf(path, sizeof path, "/dev/%s", entry->d_name);
      *PORTS[i].fd = open(path, PORTS[i].flags | O_CLOEXEC | O_NOCTTY);
      if (PORTS[i].stats && *PORTS[i].fd >= 0) {
        snprintf(path, sizeof path, "/sys/kernel/debug/virtio-ports/%s", entry->d_name);
        *PORTS[i].stats = open(path, O_RDONLY | O_CLOEXEC);  // kept past the switch of root, as the ports are
      }
    }
  }
  closedir(dir);
}

static bool all_ports_ready(void) {
  for (size_t i = 0; i < PORT_COUNT; i++) {
    if (PORTS[i].wanted && !*PORTS[i].wanted) continue;
    if (*PORTS[i].fd < 0 || (PORTS[i].host_needed && !host_connected(*PORTS[i].fd))) return false;
  }
  return true;
}

// Probing is asynchronous (the device, then its name from the host, then
// the host's connection): look every millisecond, for up to 10 s.
static void find_ports(bool wait) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    look_for_ports();
    if (all_ports_ready() || !wait) return;
    if (elapsed_ms(&start) >= PORT_WAIT_MS) break;
    struct timespec pause_for = {0, 1000000};
    nanosleep(&pause_for, NULL);
  }
  char missing[128] = "";
  for (size_t i = 0; i < PORT_COUNT; i++) {
    if (PORTS[i].wanted && !*PORTS[i].wanted) continue;
    if (*PORTS[i].fd >= 0 && (!PORTS[i].host_needed || host_connected(*PORTS[i].fd))) continue;
    strncat(missing, " ", sizeof missing - strlen(missing) - 1);
    strncat(missing, PORTS[i].name, sizeof missing - strlen(missing) - 1);
  }
  fail("virtio-serial ports not there (or the host not on them) after %d s:%s", PORT_WAIT_MS / 1000, missing);
}

// --- Records from brig.ctl -----------------------------------------------

static struct {
  char data[RECORD_MAX];
  size_t length;    // bytes held
  size_t consumed;  // bytes of the record last returned, dropped at the next parse
} ctl_in;

static void drop_consumed(void) {
  memmove(ctl_in.data, ctl_in.data + ctl_in.consumed, ctl_in.length - ctl_in.consumed);
  ctl_in.length -= ctl_in.consumed;
  ctl_in.consumed = 0;
}

// The next whole record in ctl_in: its field count (fields[] point into
// ctl_in, valid until the next call), 0 when more bytes are needed. A
// malformed record is fatal.
static int next_record(char **fields) {
  drop_consumed();
  char *data = ctl_in.data, *end = data + ctl_in.length;
  char *nul = memchr(data, '\0', ctl_in.length < 6 ? ctl_in.length : 6);
  if (!nul) {
    if (ctl_in.length >= 6) fail("malformed record from the host: no field count");
    return 0;
  }
  long count = 0;
  for (char *digit = data; digit < nul; digit++) {
    if (*digit < '0' || *digit > '9') fail("malformed record from the host: bad field count");
    count = count * 10 + (*digit - '0');
  }
  if (nul == data || (data[0] == '0' && nul - data > 1) || count < 1 || count > FIELDS_MAX) {
    fail("malformed record from the host: field count %ld", count);
  }
  char *field = nul + 1;
  for (long i = 0; i < count; i++) {
    char *field_end = field < end ? memchr(field, '\0', (size_t)(end - field)) : NULL;
    if (!field_end) {
      if (ctl_in.length == sizeof ctl_in.data) fail("record from the host longer than %d bytes", RECORD_MAX);
      return 0;
    }
    fields[i] = field;
    field = field_end + 1;
  }
  ctl_in.consumed = (size_t)(field - data);
  return (int)count;
}

// Reads what brig.ctl has into ctl_in (blocking while the config comes, not
// while the command runs): false when the host has closed it.
static bool read_ctl(void) {
  drop_consumed();
  for (;;) {
    ssize_t got = read(ctl_fd, ctl_in.data + ctl_in.length, sizeof ctl_in.data - ctl_in.length);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return true;
    if (got < 0) fail("cannot read brig.ctl: %s", strerror(errno));
    ctl_in.length += (size_t)got;
    return got > 0;
  }
}

// --- Step 3: the config ----------------------------------------------------

struct mount_spec {
  const char *type, *source, *target, *data;
  unsigned long flags;
};

static struct {
  const char *root_tag;
  struct mount_spec mounts[MOUNTS_MAX];
  int mount_count;
  const char *hostname;
  uid_t uid;
  gid_t gid;
  gid_t groups[GROUPS_MAX];
  int group_count;
  const char *cwd;
  char *env[ENV_MAX + 1];
  int env_count;
  char *argv[FIELDS_MAX];
  int argc;
  char *jail[JAIL_MAX];  // the second layer: bubblewrap and its options, the command after them
  int jail_count;
  unsigned char seccomp[SECCOMP_MAX];
  size_t seccomp_length;
  bool panic_on_oom;            // `oom kill-sandbox`: the guest's OOM panics it, which ends the VM whole
  unsigned long long pids_max;  // `pids N`: the command's tasks at once, in a cgroup of the guest's (0: none)
  int cgroup_procs;             // that cgroup's cgroup.procs, opened before the root moves; -1 without
  const char *own[OWN_MAX];  // `own PATH…`: made the sandbox's user's before the command starts
  int own_count;
  struct {
    int resource;
    struct rlimit limit;
  } rlimits[RLIMITS_MAX];
  int rlimit_count;
  bool hold;  // after `exit`, stay up until the host says `poweroff` (or hangs up brig.ctl)
  int service_fd;  // `service N`: brig.service is the command's fd N (4-9); 0 without
  const char *egress_socket;              // `egress SOCKET PROGRAM…`: where the egress program listens
  char *egress_argv[EGRESS_ARGV_MAX + 1];  // ...and the program; egress_argc 0 without
  int egress_argc;
  struct in_addr net_address, net_mask, net_gateway;  // `net …`: eth0's, the default route's
  bool net;
  bool tty;  // `tty COLS ROWS`: the command's stdio is a terminal of the guest's
  struct winsize winsize;
  int heartbeat_ms;  // `heartbeat MS`: `alive` every MS; 0 without
} config = {.cwd = "/"};

static char arena[ARENA_MAX];
static size_t arena_used;

static char *keep(const char *text) {
  size_t length = strlen(text) + 1;
  if (length > sizeof arena - arena_used) fail("config larger than %d bytes", ARENA_MAX);
  char *kept = memcpy(arena + arena_used, text, length);
  arena_used += length;
  return kept;
}

// A decimal number within [0, max]: digits only, no sign, no leading zero.
static bool parse_number(const char *text, unsigned long long max, unsigned long long *value) {
  if (!*text || strlen(text) > 20 || (text[0] == '0' && text[1])) return false;
  unsigned long long result = 0;
  for (const char *digit = text; *digit; digit++) {
    if (*digit < '0' || *digit > '9') return false;
    unsigned next = (unsigned)(*digit - '0');
    if (result > (max - next) / 10) return false;
    result = result * 10 + next;
  }
  *value = result;
  return true;
}

static unsigned long long number_field(const char *type, const char *text, unsigned long long max) {
  unsigned long long value;
  if (!parse_number(text, max, &value)) fail("record %s: bad number %.40s", type, text);
  return value;
}

static const struct {
  const char *name;
  int resource;
} LIMITS[] = {
  {"NOFILE", RLIMIT_NOFILE}, {"NPROC", RLIMIT_NPROC}, {"CORE", RLIMIT_CORE},
  {"FSIZE", RLIMIT_FSIZE},   {"AS", RLIMIT_AS},       {"CPU", RLIMIT_CPU},
};

static rlim_t limit_field(const char *text) {
  if (strcmp(text, "unlimited") == 0) return RLIM_INFINITY;
  return (rlim_t)number_field("rlimit", text, RLIM_INFINITY - 1);
}

// An absolute path without '.' or '..' components (mount targets, cwd).
static bool plain_absolute(const char *path) {
  return path[0] == '/' && strlen(path) < 4096 && !has_dot_component(path + 1);
}

static void expect_fields(int count, int wanted, const char *type) {
  if (count != wanted) fail("record %s: %d fields, expected %d", type, count, wanted);
}

static void once(bool *seen, const char *type) {
  if (*seen) fail("record %s given twice", type);
  *seen = true;
}

// One config record; true at `end`.
static bool take_config_record(int count, char **fields) {
  const char *type = fields[0];
  static bool seen_hostname, seen_uid, seen_gid, seen_groups, seen_cwd;
  if (strcmp(type, "end") == 0) {
    expect_fields(count, 1, type);
    return true;
  }
  if (strcmp(type, "hold") == 0) {
    expect_fields(count, 1, type);
    if (config.hold) fail("record hold given twice");
    config.hold = true;
  } else if (strcmp(type, "heartbeat") == 0) {
    expect_fields(count, 2, type);
    if (config.heartbeat_ms) fail("record heartbeat given twice");
    config.heartbeat_ms = (int)number_field(type, fields[1], 60000);
    if (config.heartbeat_ms < 100) fail("record heartbeat: %d ms (100-60000)", config.heartbeat_ms);
  } else if (strcmp(type, "service") == 0) {
    expect_fields(count, 2, type);
    if (config.service_fd) fail("record service given twice");
    // not 3: the inner bubblewrap reads its seccomp program there
    config.service_fd = (int)number_field(type, fields[1], 9);
    if (config.service_fd < 4) fail("record service: fd %d (4-9)", config.service_fd);
    want_service = true;
  } else if (strcmp(type, "egress") == 0) {
    if (config.egress_argc) fail("record egress given twice");
    if (count < 3 || count - 2 > EGRESS_ARGV_MAX || fields[2][0] != '/') fail("record egress: no socket or absolute program, or more than %d arguments", EGRESS_ARGV_MAX);
    if (!plain_absolute(fields[1]) || strlen(fields[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) fail("record egress: bad socket path %.100s", fields[1]);
    config.egress_socket = keep(fields[1]);
    for (int i = 2; i < count; i++) config.egress_argv[config.egress_argc++] = keep(fields[i]);
    want_egress = true;
  } else if (strcmp(type, "net") == 0) {
    expect_fields(count, 4, type);
    if (config.net) fail("record net given twice");
    if (inet_pton(AF_INET, fields[1], &config.net_address) != 1 || inet_pton(AF_INET, fields[2], &config.net_mask) != 1 || inet_pton(AF_INET, fields[3], &config.net_gateway) != 1) {
      fail("record net: not IPv4 addresses");
    }
    config.net = true;
  } else if (strcmp(type, "tty") == 0) {
    expect_fields(count, 3, type);
    if (config.tty) fail("record tty given twice");
    config.tty = true;
    config.winsize.ws_col = (unsigned short)number_field(type, fields[1], 65535);
    config.winsize.ws_row = (unsigned short)number_field(type, fields[2], 65535);
  } else if (strcmp(type, "root") == 0) {
    expect_fields(count, 2, type);
    if (config.root_tag) fail("record root given twice");
    if (!fields[1][0]) fail("record root: empty tag");
    config.root_tag = keep(fields[1]);
  } else if (strcmp(type, "mount") == 0) {
    expect_fields(count, 6, type);
    if (!config.root_tag) fail("record mount before root");
    if (config.mount_count == MOUNTS_MAX) fail("more than %d mounts", MOUNTS_MAX);
    if (!fields[1][0] || !fields[2][0]) fail("record mount: empty type or source");
    if (!plain_absolute(fields[3])) fail("record mount: bad target %.100s", fields[3]);
    struct mount_spec *spec = &config.mounts[config.mount_count++];
    spec->type = keep(fields[1]);
    spec->source = keep(fields[2]);
    spec->target = keep(fields[3]);
    spec->flags = (unsigned long)number_field(type, fields[4], ~0UL);
    spec->data = fields[5][0] ? keep(fields[5]) : NULL;
  } else if (strcmp(type, "hostname") == 0) {
    expect_fields(count, 2, type);
    once(&seen_hostname, type);
    if (!fields[1][0] || strlen(fields[1]) > 64) fail("record hostname: bad name");
    config.hostname = keep(fields[1]);
  } else if (strcmp(type, "uid") == 0) {
    expect_fields(count, 2, type);
    once(&seen_uid, type);
    config.uid = (uid_t)number_field(type, fields[1], 0xFFFFFFFEULL);
  } else if (strcmp(type, "gid") == 0) {
    expect_fields(count, 2, type);
    once(&seen_gid, type);
    config.gid = (gid_t)number_field(type, fields[1], 0xFFFFFFFEULL);
  } else if (strcmp(type, "groups") == 0) {
    once(&seen_groups, type);
    if (count - 1 > GROUPS_MAX) fail("more than %d groups", GROUPS_MAX);
    for (int i = 1; i < count; i++) config.groups[config.group_count++] = (gid_t)number_field(type, fields[i], 0xFFFFFFFEULL);
  } else if (strcmp(type, "cwd") == 0) {
    expect_fields(count, 2, type);
    once(&seen_cwd, type);
    if (!plain_absolute(fields[1])) fail("record cwd: bad path %.100s", fields[1]);
    config.cwd = keep(fields[1]);
  } else if (strcmp(type, "env") == 0) {
    expect_fields(count, 2, type);
    if (config.env_count == ENV_MAX) fail("more than %d environment variables", ENV_MAX);
    const char *equals = strchr(fields[1], '=');
    if (!equals || equals == fields[1]) fail("record env: not K=V: %.100s", fields[1]);
    config.env[config.env_count++] = keep(fields[1]);
  } else if (strcmp(type, "jail") == 0) {
    if (config.jail_count) fail("record jail given twice");
    if (count < 2 || count - 1 >= JAIL_MAX || fields[1][0] != '/') fail("record jail: no absolute program, or more than %d fields", JAIL_MAX - 1);
    for (int i = 1; i < count; i++) config.jail[config.jail_count++] = keep(fields[i]);
  } else if (strcmp(type, "seccomp") == 0) {
    expect_fields(count, 2, type);
    if (config.seccomp_length) fail("record seccomp given twice");
    size_t digits = strlen(fields[1]);
    if (digits == 0 || digits % 16 != 0 || digits / 2 > SECCOMP_MAX) fail("record seccomp: %zu hex digits, not whole BPF instructions", digits);
    for (size_t i = 0; i < digits; i += 2) {
      unsigned int byte;
      if (!isxdigit((unsigned char)fields[1][i]) || !isxdigit((unsigned char)fields[1][i + 1]) || sscanf(fields[1] + i, "%2x", &byte) != 1) fail("record seccomp: not hex");
      config.seccomp[config.seccomp_length++] = (unsigned char)byte;
    }
  } else if (strcmp(type, "own") == 0) {
    if (config.own_count + count - 1 > OWN_MAX) fail("more than %d paths to own", OWN_MAX);
    for (int i = 1; i < count; i++) {
      if (!plain_absolute(fields[i])) fail("record own: bad path %.100s", fields[i]);
      config.own[config.own_count++] = keep(fields[i]);
    }
  } else if (strcmp(type, "pids") == 0) {
    expect_fields(count, 2, type);
    config.pids_max = number_field(type, fields[1], 4194304);
    if (config.pids_max == 0) fail("record pids: 0");
  } else if (strcmp(type, "oom") == 0) {
    expect_fields(count, 2, type);
    if (strcmp(fields[1], "kill-sandbox") == 0) config.panic_on_oom = true;
    else if (strcmp(fields[1], "kill-process") != 0) fail("record oom: unknown action %.40s", fields[1]);
  } else if (strcmp(type, "argv") == 0) {
    if (config.argc) fail("record argv given twice");
    if (count < 2 || !fields[1][0]) fail("record argv: no program");
    for (int i = 1; i < count; i++) config.argv[config.argc++] = keep(fields[i]);
  } else if (strcmp(type, "rlimit") == 0) {
    expect_fields(count, 4, type);
    size_t which = 0;
    while (which < sizeof LIMITS / sizeof LIMITS[0] && strcmp(LIMITS[which].name, fields[1]) != 0) which++;
    if (which == sizeof LIMITS / sizeof LIMITS[0]) fail("record rlimit: unknown limit %.40s", fields[1]);
    for (int i = 0; i < config.rlimit_count; i++) {
      if (config.rlimits[i].resource == LIMITS[which].resource) fail("record rlimit %s given twice", LIMITS[which].name);
    }
    struct rlimit limit = {limit_field(fields[2]), limit_field(fields[3])};
    if (limit.rlim_cur > limit.rlim_max) fail("record rlimit %s: soft above hard", LIMITS[which].name);
    config.rlimits[config.rlimit_count].resource = LIMITS[which].resource;
    config.rlimits[config.rlimit_count++].limit = limit;
  } else {
    fail("unknown record from the host: %.100s", type);
  }
  return false;
}

static char *record_fields[FIELDS_MAX];  // the fields of the record last read from brig.ctl

static void read_config(void) {
  for (;;) {
    int count = next_record(record_fields);
    if (count == 0) {
      if (!read_ctl()) fail("the host closed brig.ctl before the config's end");
      continue;
    }
    if (take_config_record(count, record_fields)) break;
  }
  if (!config.root_tag) fail("no root in the config");
  if (!config.argc) fail("no argv in the config");
  if (config.jail_count && !config.seccomp_length) fail("a jail without its seccomp program");
  if (config.hold && (stdout_stats < 0 || stderr_stats < 0)) fail("record hold: no virtio-ports statistics in debugfs to count the output with");
}

// The command's tasks, counted by the guest kernel in a cgroup of its own (the host's pids limit counts
// QEMU's threads, not the guest's processes). Made while the initramfs's /sys is still there; the child
// joins it through the fd kept open, after the root has moved.
static void limit_tasks(void) {
  config.cgroup_procs = -1;
  if (config.pids_max == 0) return;
  if (mkdir("/sys/fs/cgroup", 0755) < 0 && errno != EEXIST) fail("mkdir /sys/fs/cgroup: %s", strerror(errno));
  if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("cannot mount cgroup2: %s", strerror(errno));
  int control = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
  if (control < 0 || !write_all(control, "+pids", 5)) fail("cannot enable the pids controller: %s", strerror(errno));
  close(control);
  if (mkdir("/sys/fs/cgroup/sandbox", 0755) < 0) fail("mkdir the sandbox's cgroup: %s", strerror(errno));
  char value[32];
  int length = snprintf(value, sizeof value, "%llu", config.pids_max);
  int limit = open("/sys/fs/cgroup/sandbox/pids.max", O_WRONLY | O_CLOEXEC);
  if (limit < 0 || !write_all(limit, value, (size_t)length)) fail("cannot set pids.max: %s", strerror(errno));
  close(limit);
  config.cgroup_procs = open("/sys/fs/cgroup/sandbox/cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (config.cgroup_procs < 0) fail("cannot open the sandbox's cgroup.procs: %s", strerror(errno));
}

// `net`: the network device's driver, then its address, the default route and lo (ioctls: no tool in the initramfs).
static void set_interface(int sock, const char *name, const struct in_addr *address, const struct in_addr *mask) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", name);
  struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
  if (address) {
    in->sin_family = AF_INET;
    in->sin_addr = *address;
    if (ioctl(sock, SIOCSIFADDR, &request) < 0) fail("cannot give %s its address: %s", name, strerror(errno));
    in->sin_addr = *mask;
    if (ioctl(sock, SIOCSIFNETMASK, &request) < 0) fail("cannot give %s its netmask: %s", name, strerror(errno));
  }
  if (ioctl(sock, SIOCGIFFLAGS, &request) < 0) fail("no interface %s: %s", name, strerror(errno));
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock, SIOCSIFFLAGS, &request) < 0) fail("cannot bring %s up: %s", name, strerror(errno));
}

static void bring_up_network(void) {
  load_modules("/modules.network");
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) fail("socket: %s", strerror(errno));
  set_interface(sock, "lo", NULL, NULL);
  // virtio_net probes its device asynchronously: eth0 may take a moment to appear.
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (if_nametoindex("eth0") == 0) {
    if (elapsed_ms(&start) >= PORT_WAIT_MS) fail("no eth0 after %d s: the network device did not appear", PORT_WAIT_MS / 1000);
    struct timespec pause_for = {0, 1000000};
    nanosleep(&pause_for, NULL);
  }
  set_interface(sock, "eth0", &config.net_address, &config.net_mask);
  struct rtentry route;
  memset(&route, 0, sizeof route);
  struct sockaddr_in *gateway = (struct sockaddr_in *)&route.rt_gateway, *any = (struct sockaddr_in *)&route.rt_dst, *none = (struct sockaddr_in *)&route.rt_genmask;
  gateway->sin_family = any->sin_family = none->sin_family = AF_INET;
  gateway->sin_addr = config.net_gateway;
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  if (ioctl(sock, SIOCADDRT, &route) < 0) fail("cannot add the default route: %s", strerror(errno));
  close(sock);
}

// --- Step 4: the root and the guest-side mounts ------------------------------

static void switch_root(void) {
  if (strcmp(config.root_tag, "initramfs") == 0) return;
  if (mount(config.root_tag, "/newroot", "virtiofs", MS_NOSUID | MS_NODEV, NULL) < 0) {
    fail("cannot mount virtiofs %s on /newroot: %s", config.root_tag, strerror(errno));
  }
  // The initramfs's own mounts would stay beneath the new root, unseen; the open ports and console keep working.
  static const char *const early[] = {"/proc", "/sys", "/dev"};
  for (size_t i = 0; i < 3; i++) {
    if (umount2(early[i], MNT_DETACH) < 0) fail("cannot unmount %s: %s", early[i], strerror(errno));
  }
  if (chdir("/newroot") < 0) fail("cannot enter /newroot: %s", strerror(errno));
  if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) fail("cannot move /newroot to /: %s", strerror(errno));
  if (chroot(".") < 0) fail("cannot chroot into the new root: %s", strerror(errno));
  if (chdir("/") < 0) fail("cannot enter the new root: %s", strerror(errno));
}

// mkdir -p, one component at a time (no recursion); what exists stays as it is.
static void make_directories(const char *target) {
  char path[4096];
  size_t length = strlen(target);
  memcpy(path, target, length + 1);
  for (size_t i = 1; i <= length; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    if (path[i - 1] == '/') continue;  // "//"
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) fail("cannot create mount point %s: %s", path, strerror(errno));
    path[i] = saved;
  }
}

static void apply_mounts(void) {
  for (int i = 0; i < config.mount_count; i++) {
    const struct mount_spec *spec = &config.mounts[i];
    make_directories(spec->target);
    if (mount(spec->source, spec->target, spec->type, spec->flags, spec->data) < 0) {
      fail("cannot mount %s %s on %s: %s", spec->type, spec->source, spec->target, strerror(errno));
    }
  }
  if (config.hostname && sethostname(config.hostname, strlen(config.hostname)) < 0) {
    fail("cannot set the hostname: %s", strerror(errno));
  }
  // The view's tmpfs were made by host root (no user namespace there): the sandbox's user gets them, as in the
  // jail, where bubblewrap makes them inside its user's namespace. lchown: the last component is never followed.
  for (int i = 0; i < config.own_count; i++) {
    if (lchown(config.own[i], config.uid, config.gid) < 0) fail("cannot give %s to %u:%u: %s", config.own[i], config.uid, config.gid, strerror(errno));
  }
}

// --- Step 5: the command -------------------------------------------------

// In the child, before the exec: tells pid 1 why the command never ran.
__attribute__((noreturn, format(printf, 2, 3))) static void child_fail(int status_fd, const char *format, ...) {
  char message[MESSAGE_MAX];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  write_all(status_fd, message, strlen(message));
  _exit(125);
}

// What the init starts in the second layer: the command, or the egress program beside it.
struct launch {
  char **argv;  // NULL-terminated
  char **env;   // NULL-terminated
  int stdio[3];
  struct {
    int from, to;  // an fd of the init's, and where the program gets it (4-9: 3 is the inner jail's)
  } handed[HANDED_MAX];
  int handed_count;
};

// In the child: stdio, the handed fds, the sandbox's limits, cgroup, ids and
// cwd, then the inner bubblewrap (or, with no jail, the program itself).
__attribute__((noreturn)) static void start_jailed(const struct launch *launch, int status_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);  // ignored in pid 1, and an ignored signal stays ignored across exec
  if (setsid() < 0) child_fail(status_fd, "setsid: %s", strerror(errno));
  if (config.cgroup_procs >= 0) {
    char pid[24];
    int length = snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (!write_all(config.cgroup_procs, pid, (size_t)length)) child_fail(status_fd, "cannot join the sandbox's cgroup: %s", strerror(errno));
  }
  // Every fd that moves goes above 9 first, so no dup2 below lands on another's source or on the status pipe.
  int moved_status = fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
  if (moved_status < 0) child_fail(status_fd, "fcntl: %s", strerror(errno));
  status_fd = moved_status;
  int sources[3 + HANDED_MAX];
  for (int i = 0; i < 3 + launch->handed_count; i++) {
    sources[i] = fcntl(i < 3 ? launch->stdio[i] : launch->handed[i - 3].from, F_DUPFD_CLOEXEC, 10);
    if (sources[i] < 0) child_fail(status_fd, "fcntl: %s", strerror(errno));
  }
  // dup2 leaves close-on-exec off: these reach the program (through the inner bubblewrap, which keeps them).
  for (int i = 0; i < 3 + launch->handed_count; i++) {
    if (dup2(sources[i], i < 3 ? i : launch->handed[i - 3].to) < 0) child_fail(status_fd, "cannot hand fds over: %s", strerror(errno));
  }
  for (int i = 0; i < config.rlimit_count; i++) {
    if (setrlimit(config.rlimits[i].resource, &config.rlimits[i].limit) < 0) child_fail(status_fd, "setrlimit: %s", strerror(errno));
  }
  if (setgroups((size_t)config.group_count, config.groups) < 0) child_fail(status_fd, "setgroups: %s", strerror(errno));
  if (setresgid(config.gid, config.gid, config.gid) < 0) child_fail(status_fd, "setgid %u: %s", config.gid, strerror(errno));
  if (setresuid(config.uid, config.uid, config.uid) < 0) child_fail(status_fd, "setuid %u: %s", config.uid, strerror(errno));
  if (config.uid != 0) {
    // Leaving root empties the permitted and effective sets; the inheritable one stays as root had it (as brig-exec).
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2];
    memset(caps, 0, sizeof caps);
    if (syscall(SYS_capset, &header, caps) < 0) child_fail(status_fd, "capset: %s", strerror(errno));
  }
  if (chdir(config.cwd) < 0) child_fail(status_fd, "cannot enter %s: %s", config.cwd, strerror(errno));
  environ = launch->env;  // execvpe searches the PATH of the environment it runs in: the program's
  if (config.jail_count) {
    // The second layer: the inner bubblewrap, as the sandbox's user, reads its filter on SECCOMP_FD and runs the program.
    int program[2];
    if (pipe(program) < 0) child_fail(status_fd, "pipe: %s", strerror(errno));
    if (!write_all(program[1], (const char *)config.seccomp, config.seccomp_length)) child_fail(status_fd, "cannot hand the seccomp program over: %s", strerror(errno));
    close(program[1]);
    if (program[0] != SECCOMP_FD && (dup2(program[0], SECCOMP_FD) < 0 || close(program[0]) < 0)) child_fail(status_fd, "dup2: %s", strerror(errno));
    static char *jailed[JAIL_MAX + FIELDS_MAX];
    int count = 0;
    for (int i = 0; i < config.jail_count; i++) jailed[count++] = config.jail[i];
    for (int i = 0; launch->argv[i]; i++) jailed[count++] = launch->argv[i];
    jailed[count] = NULL;
    execve(jailed[0], jailed, launch->env);
    int err = errno;
    child_fail(status_fd, "cannot start the inner jail %s: %s", jailed[0], strerror(err));
  }
  execvpe(launch->argv[0], launch->argv, launch->env);
  int err = errno;
  dprintf(2, "brig-vm-init: cannot run %s: %s\n", launch->argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

// Forks a child that runs `launch`; returns once it has exec'd (its status
// pipe closes at the exec), or fails with what it said before giving up.
static pid_t start_program(const struct launch *launch) {
  int status_pipe[2];
  if (pipe2(status_pipe, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
  pid_t child = fork();
  if (child < 0) fail("fork: %s", strerror(errno));
  if (child == 0) start_jailed(launch, status_pipe[1]);
  close(status_pipe[1]);
  char message[MESSAGE_MAX];
  size_t length = 0;
  for (;;) {
    ssize_t got = read(status_pipe[0], message + length, sizeof message - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0 || (length += (size_t)got) == sizeof message - 1) break;
  }
  close(status_pipe[0]);
  if (length > 0) {
    message[length] = '\0';
    waitpid(child, NULL, 0);
    fail("%s", message);
  }
  return child;
}

// `egress`: the socket the command's relay connects to, listening before the
// command starts, and the program that carries each connection over
// brig.egress. The init keeps no copy of the socket: should the program die,
// a connection is refused, not left waiting in the backlog.
static void start_egress(void) {
  int listening = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listening < 0) fail("socket: %s", strerror(errno));
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  memcpy(address.sun_path, config.egress_socket, strlen(config.egress_socket) + 1);  // length checked with the record
  if (bind(listening, (struct sockaddr *)&address, sizeof address) < 0) fail("cannot bind %s: %s", config.egress_socket, strerror(errno));
  if (lchown(config.egress_socket, config.uid, config.gid) < 0 || chmod(config.egress_socket, 0600) < 0) fail("cannot give %s to the sandbox's user: %s", config.egress_socket, strerror(errno));
  if (listen(listening, 128) < 0) fail("listen: %s", strerror(errno));
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) fail("cannot open /dev/null: %s", strerror(errno));
  static char *bare_env[] = {"PATH=/usr/bin:/bin", NULL};
  config.egress_argv[config.egress_argc] = NULL;
  // Its errors go where the command's do: the caller's stderr (or envd.log).
  struct launch egress = {
      .argv = config.egress_argv,
      .env = bare_env,
      .stdio = {null, null, stderr_port},
      .handed = {{listening, EGRESS_LISTEN_FD}, {egress_port, EGRESS_PORT_FD}},
      .handed_count = 2,
  };
  start_program(&egress);
  close(listening);
  close(null);
}

// The command's stdin: bytes from brig.stdin on their way into its pipe.
// `eof` comes on brig.ctl, the bytes on brig.stdin: the guest may see the
// record before the last bytes, so `eof N` says how many bytes the host
// sent in all, and the pipe closes once those have come and gone through.
// A bare `eof` closes it after what has come so far. brig.stdin hanging up
// closes it too, but QEMU drops what the guest has not read yet when the
// host closes its socket: a host ends stdin with `eof N`, not by closing.
static struct {
  char data[64 * 1024];
  size_t length;
  int pipe_fd;                   // the pipe's write end; -1 once closed
  bool eof;                      // `eof` came
  unsigned long long eof_after;  // ...and said after how many bytes (0: none)
  unsigned long long received;   // bytes read from brig.stdin so far
  bool port_open;                // brig.stdin has not hung up
} input = {.pipe_fd = -1, .port_open = true};

static bool input_ended(void) {
  return !input.port_open || (input.eof && input.received >= input.eof_after);
}

static void close_input_pipe(void) {
  if (input.pipe_fd >= 0) close(input.pipe_fd);
  input.pipe_fd = -1;
  input.length = 0;
}

static void read_stdin_port(void) {
  static char discard[4096];
  bool keeping = input.pipe_fd >= 0;  // with the pipe gone, the host's bytes are drained and dropped
  char *into = keeping ? input.data + input.length : discard;
  size_t room = keeping ? sizeof input.data - input.length : sizeof discard;
  ssize_t got = read(stdin_port, into, room);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got <= 0) {  // the host closed brig.stdin: nothing more can come
    input.port_open = false;
    return;
  }
  input.received += (unsigned long long)got;
  if (keeping) input.length += (size_t)got;
}

static void write_stdin_pipe(void) {
  ssize_t written = write(input.pipe_fd, input.data, input.length);
  if (written < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (written < 0) {  // EPIPE: the command closed its stdin
    close_input_pipe();
    return;
  }
  memmove(input.data, input.data + written, input.length - (size_t)written);
  input.length -= (size_t)written;
}

// With `tty`: the terminal's master, and what it said on its way to brig.stdout.
static struct {
  int master;  // -1 without a terminal
  char data[64 * 1024];
  size_t length;
  bool done;  // the master read EIO: every holder of the terminal is gone
} terminal = {.master = -1};

// A pty of the guest's own devpts (the `devpts newinstance` mount: /dev/ptmx
// would name the initial instance, which is not mounted), sized as the
// caller's; returns the slave, opened from the master (no path to race).
static int open_terminal(void) {
  int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail("cannot open /dev/pts/ptmx: %s", strerror(errno));
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0) fail("cannot unlock the terminal: %s", strerror(errno));
  if (ioctl(master, TIOCSWINSZ, &config.winsize) < 0) fail("cannot size the terminal: %s", strerror(errno));
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) fail("cannot open the terminal's slave: %s", strerror(errno));
  terminal.master = master;
  return slave;
}

static void read_terminal(void) {
  ssize_t got = read(terminal.master, terminal.data, sizeof terminal.data);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got <= 0) {  // EIO: no one holds the slave any more
    terminal.done = true;
    return;
  }
  terminal.length = (size_t)got;
}

static void write_terminal_output(void) {
  ssize_t written = write(stdout_port, terminal.data, terminal.length);
  if (written < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (written < 0) {  // the host left: what the terminal says goes nowhere
    terminal.length = 0;
    return;
  }
  memmove(terminal.data, terminal.data + written, terminal.length - (size_t)written);
  terminal.length -= (size_t)written;
}

// Once everything else is killed: what the terminal still holds, to brig.stdout, before it is counted.
static void drain_terminal(void) {
  if (terminal.master < 0) return;
  while (!terminal.done) {
    if (terminal.length > 0 && !write_all(stdout_port, terminal.data, terminal.length)) return;
    terminal.length = 0;
    struct pollfd readable = {.fd = terminal.master, .events = POLLIN};
    if (poll(&readable, 1, 1000) == 0) return;  // a holder of the slave outlived kill(-1): nothing more is coming
    read_terminal();
  }
  if (terminal.length > 0) write_all(stdout_port, terminal.data, terminal.length);
  terminal.length = 0;
}

// --- Heartbeat --------------------------------------------------------------

static struct timespec last_beat;

// `alive`, when a beat is due. One small write that never waits: a host
// that does not read brig.ctl gets no beats, and the guest goes on.
static void beat(void) {
  if (!config.heartbeat_ms || (last_beat.tv_sec != 0 && elapsed_ms(&last_beat) < config.heartbeat_ms)) return;
  clock_gettime(CLOCK_MONOTONIC, &last_beat);
  static const char alive[] = "1\0alive";  // the record "1\0alive\0": sizeof counts the final NUL
  int flags = fcntl(ctl_fd, F_GETFL);
  if (flags < 0 || fcntl(ctl_fd, F_SETFL, flags | O_NONBLOCK) < 0) return;
  ssize_t written = write(ctl_fd, alive, sizeof alive);
  // A port queues a small write whole or not at all; a part would break every record after it.
  if (written > 0 && (size_t)written < sizeof alive) fail("a heartbeat went out in part");
  fcntl(ctl_fd, F_SETFL, flags);
}

// poll's timeout: until the next beat is due (-1: no heartbeat).
static int until_beat(void) {
  if (!config.heartbeat_ms) return -1;
  long left = config.heartbeat_ms - elapsed_ms(&last_beat);
  return left < 0 ? 0 : (int)left;
}

static void take_run_record(int count, char **fields, pid_t command) {
  if (strcmp(fields[0], "eof") == 0) {
    if (count != 1 && count != 2) fail("record eof: %d fields, expected 1 or 2", count);
    unsigned long long after = count == 2 ? number_field(fields[0], fields[1], ~0ULL) : 0;
    if (input.eof) return;  // the first one stands
    input.eof = true;
    input.eof_after = after;
  } else if (strcmp(fields[0], "poweroff") == 0) {
    expect_fields(count, 1, fields[0]);
    power_off();
  } else if (strcmp(fields[0], "signal") == 0) {
    expect_fields(count, 2, fields[0]);
    int number = (int)number_field(fields[0], fields[1], 64);
    if (number < 1) fail("record signal: bad signal 0");
    kill(-command, number);  // its session's process group; ESRCH once it is gone
  } else if (strcmp(fields[0], "winsize") == 0) {
    expect_fields(count, 3, fields[0]);
    struct winsize size = {.ws_col = (unsigned short)number_field(fields[0], fields[1], 65535), .ws_row = (unsigned short)number_field(fields[0], fields[2], 65535)};
    if (terminal.master >= 0) ioctl(terminal.master, TIOCSWINSZ, &size);  // the kernel tells the foreground (SIGWINCH)
  } else {
    fail("unknown record from the host: %.100s", fields[0]);
  }
}

// Reaps every process that has ended; the command's status when it is one of them, else -1.
static int reap(pid_t command) {
  int code = -1, status;
  pid_t ended;
  while ((ended = waitpid(-1, &status, WNOHANG)) > 0) {
    if (ended != command) continue;  // an orphan pid 1 inherited
    if (WIFEXITED(status)) code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
  }
  return code;
}

// How many bytes the command and everything it started wrote to an output
// port (debugfs: virtio_console's `bytes_sent`, counted as each write is queued).
static void bytes_sent(int stats, char *text, size_t size) {
  char data[1024];
  ssize_t length = lseek(stats, 0, SEEK_SET) < 0 ? -1 : read(stats, data, sizeof data - 1);
  if (length <= 0) fail("cannot read the virtio-ports statistics: %s", length < 0 ? strerror(errno) : "empty");
  data[length] = '\0';
  const char *line = strstr(data, "bytes_sent: ");
  unsigned long long value;
  char *end = line ? strchr(line, '\n') : NULL;
  if (end) *end = '\0';
  if (!line || !parse_number(line + strlen("bytes_sent: "), ~0ULL, &value)) fail("no bytes_sent in the virtio-ports statistics");
  snprintf(text, size, "%llu", value);
}

// The command has ended with code. Without `hold`: `exit CODE`, and off (what
// QEMU still holds of the output when the guest goes is lost). With it:
// everything else is killed first, so the output is final, then `exit CODE
// STDOUT_BYTES STDERR_BYTES` says how much there is; the host reads that much
// and says `poweroff` (or hangs up brig.ctl).
__attribute__((noreturn)) static void finish(int code) {
  char text[16], out[24], err[24];
  snprintf(text, sizeof text, "%d", code);
  if (!config.hold) {
    const char *exit_record[] = {"exit", text};
    if (!send_record(2, exit_record)) say("cannot write the exit record to brig.ctl");
    power_off();
  }
  kill(-1, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
  drain_terminal();
  bytes_sent(stdout_stats, out, sizeof out);
  bytes_sent(stderr_stats, err, sizeof err);
  const char *exit_record[] = {"exit", text, out, err};
  if (!send_record(4, exit_record)) {
    say("cannot write the exit record to brig.ctl");
    power_off();
  }
  for (;;) {
    struct pollfd readable = {.fd = ctl_fd, .events = POLLIN};
    int ready = poll(&readable, 1, until_beat());
    if (ready < 0 && errno != EINTR) fail("poll: %s", strerror(errno));
    beat();  // the host may take its time reading the output: it must not think the guest hung
    if (ready <= 0) continue;
    if (!read_ctl()) power_off();  // the host hung up: it has what it wanted
    int count;
    while ((count = next_record(record_fields)) > 0) {
      // `eof` and `signal` may cross the exit record on their way: nothing is left for them
      if (strcmp(record_fields[0], "poweroff") == 0) power_off();
      if (strcmp(record_fields[0], "eof") != 0 && strcmp(record_fields[0], "signal") != 0 && strcmp(record_fields[0], "winsize") != 0) {
        fail("unknown record from the host: %.100s", record_fields[0]);
      }
    }
  }
}

__attribute__((noreturn)) static void run(void) {
  sigset_t child_signal;
  sigemptyset(&child_signal);
  sigaddset(&child_signal, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &child_signal, NULL) < 0) fail("sigprocmask: %s", strerror(errno));
  int signal_fd = signalfd(-1, &child_signal, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) fail("signalfd: %s", strerror(errno));
  signal(SIGPIPE, SIG_IGN);
  if (config.egress_argc) start_egress();
  // The command's stdin: a pipe the init fills from brig.stdin, or with `tty` a terminal of the guest's.
  int stdin_pipe[2] = {-1, -1};
  int slave = config.tty ? open_terminal() : -1;
  if (!config.tty && pipe2(stdin_pipe, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
  config.env[config.env_count] = NULL;
  config.argv[config.argc] = NULL;
  struct launch command_launch = {
      .argv = config.argv,
      .env = config.env,
      .stdio = {config.tty ? slave : stdin_pipe[0], config.tty ? slave : stdout_port, config.tty ? slave : stderr_port},
      .handed = {{service_port, config.service_fd}},
      .handed_count = config.service_fd ? 1 : 0,
  };
  pid_t command = start_program(&command_launch);
  if (config.tty) {
    close(slave);
    // A copy of the master for the input side: `eof` closes it, never the master the output is read from.
    stdin_pipe[1] = fcntl(terminal.master, F_DUPFD_CLOEXEC, 0);
    if (stdin_pipe[1] < 0 || fcntl(stdout_port, F_SETFL, O_NONBLOCK) < 0) fail("fcntl: %s", strerror(errno));
  } else {
    close(stdin_pipe[0]);
  }

  input.pipe_fd = stdin_pipe[1];
  if (fcntl(input.pipe_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(ctl_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(stdin_port, F_SETFL, O_NONBLOCK) < 0) {
    fail("fcntl: %s", strerror(errno));
  }
  for (;;) {
    int count;  // records that came with the config's last read are waiting already
    while ((count = next_record(record_fields)) > 0) take_run_record(count, record_fields, command);
    if (input_ended() && input.length == 0 && input.pipe_fd >= 0) close_input_pipe();
    bool want_stdin = input.port_open && (input.pipe_fd < 0 || input.length < sizeof input.data);
    bool want_terminal = terminal.master >= 0 && !terminal.done && terminal.length == 0;
    struct pollfd watched[6] = {
      {.fd = signal_fd, .events = POLLIN},
      {.fd = ctl_fd, .events = POLLIN},
      {.fd = want_stdin ? stdin_port : -1, .events = POLLIN},
      {.fd = input.length > 0 ? input.pipe_fd : -1, .events = POLLOUT},
      {.fd = want_terminal ? terminal.master : -1, .events = POLLIN},
      {.fd = terminal.length > 0 ? stdout_port : -1, .events = POLLOUT},
    };
    int ready = poll(watched, 6, until_beat());
    beat();
    if (ready <= 0) {
      if (ready == 0 || errno == EINTR) continue;
      fail("poll: %s", strerror(errno));
    }
    if (watched[0].revents) {
      struct signalfd_siginfo info;
      while (read(signal_fd, &info, sizeof info) > 0) {
      }
      int code = reap(command);
      if (code >= 0) finish(code);
    }
    if (watched[1].revents) {
      if (!read_ctl()) {
        say("the host closed brig.ctl: ending the VM");
        power_off();
      }
    }
    if (watched[2].revents) read_stdin_port();
    if (watched[3].revents) write_stdin_pipe();
    if (watched[4].revents) read_terminal();
    if (watched[5].revents) write_terminal_output();
  }
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "brig-vm-init: runs only as pid 1 of a VM guest (the initramfs's /init)\n");
    return 125;
  }
  // Before the console exists nothing can be said: a failure here just powers off.
  if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL) < 0 && errno != EBUSY) power_off();
  open_console();
  mount_early("proc", "/proc");
  mount_early("sysfs", "/sys");
  mount("debugfs", "/sys/kernel/debug", "debugfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);  // for `hold`; without it, no `hold`
  load_modules("/modules.order");
  find_ports(true);
  read_config();
  beat();  // the first: the host now knows the guest booted
  if (want_service || want_egress) find_ports(true);
  if (config.net) bring_up_network();
  // At the memory limit: the guest's own OOM killer takes the largest process (kill-process), or the guest
  // panics (kill-sandbox), which ends QEMU (panic=-1, -no-reboot) and brig finds the panic on the console.
  if (config.panic_on_oom) {
    int knob = open("/proc/sys/vm/panic_on_oom", O_WRONLY | O_CLOEXEC);
    if (knob < 0 || !write_all(knob, "1", 1)) fail("cannot set vm.panic_on_oom: %s", strerror(errno));
    close(knob);
  }
  limit_tasks();
  switch_root();
  apply_mounts();
  run();
}
