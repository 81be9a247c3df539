// brig-relay PORT=SOCKETPATH [PORT=SOCKETPATH...] -- command [args...]
//
// Bridges a jail's private loopback to unix sockets on the host: listens on
// 127.0.0.1:PORT for each pair, forks a relay child that pipes every accepted
// connection to SOCKETPATH, then execs the command in the original process
// (same pid, same stdio, same exit status). The listeners exist before the
// command starts, so it can connect at once. Exit codes: 125 setup error,
// 126 command not executable, 127 command not found.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // accept4
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAIRS 64
#define MAX_CONNS 1024
#define BUF_SIZE 65536

// buf[i] holds bytes read from fd[i] and not yet written to fd[!i].
struct conn {
  int fd[2];   // 0: accepted TCP client, 1: unix socket
  int eof[2];  // fd[i] has no more to read
  int shut[2]; // we have shut down writing to fd[i]
  int dead;
  struct { size_t start, end; char data[BUF_SIZE]; } buf[2];
};

static int listeners[MAX_PAIRS];
static struct sockaddr_un targets[MAX_PAIRS];
static int npairs;
static struct conn *conns[MAX_CONNS];
static int nconns;

static void fatal(const char *what, const char *detail) {
  fprintf(stderr, "brig-relay: %s: %s\n", what, detail);
  exit(125);
}

static void open_conn(int client, const struct sockaddr_un *target) {
  if (nconns == MAX_CONNS) { close(client); return; } // refuse beyond the cap
  int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // An AF_UNIX connect completes at once or fails (EAGAIN when the backlog is
  // full, ENOENT/ECONNREFUSED while the daemon restarts): no EINPROGRESS.
  int server = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct conn *c = server < 0 ? NULL : calloc(1, sizeof *c);
  if (!c || connect(server, (const struct sockaddr *)target, sizeof *target) < 0) {
    if (server >= 0) close(server);
    free(c);
    close(client);
    return;
  }
  c->fd[0] = client, c->fd[1] = server;
  conns[nconns++] = c;
}

// Moves what it can of buf[i] to fd[!i]; passes EOF on once buf[i] is drained.
static void flush(struct conn *c, int i) {
  int o = !i;
  while (c->buf[i].start < c->buf[i].end) {
    ssize_t n = write(c->fd[o], c->buf[i].data + c->buf[i].start, c->buf[i].end - c->buf[i].start);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) { c->dead = 1; return; }
    c->buf[i].start += (size_t)n;
  }
  c->buf[i].start = c->buf[i].end = 0;
  if (c->eof[i] && !c->shut[o]) shutdown(c->fd[o], SHUT_WR), c->shut[o] = 1;
  if (c->shut[0] && c->shut[1]) c->dead = 1; // both directions ended
}

static void fill(struct conn *c, int i) {
  ssize_t n;
  do n = read(c->fd[i], c->buf[i].data + c->buf[i].end, BUF_SIZE - c->buf[i].end);
  while (n < 0 && errno == EINTR);
  if (n > 0) c->buf[i].end += (size_t)n;
  else if (n == 0) c->eof[i] = 1;
  else if (errno != EAGAIN) c->dead = 1;
}

static short wanted(const struct conn *c, int i) {
  short events = 0;
  if (!c->eof[i] && c->buf[i].end < BUF_SIZE) events |= POLLIN;
  if (c->buf[!i].start < c->buf[!i].end) events |= POLLOUT;
  return events;
}

static void relay(void) {
  static struct pollfd fds[MAX_PAIRS + 2 * MAX_CONNS];
  int paused = 0; // out of fds: stop accepting until a connection closes
  for (;;) {
    for (int l = 0; l < npairs; l++) fds[l] = (struct pollfd){ paused ? -1 : listeners[l], POLLIN, 0 };
    for (int k = 0; k < nconns; k++)
      for (int i = 0; i < 2; i++) {
        short events = wanted(conns[k], i);
        // An fd we want nothing from is left out: poll() would report its
        // POLLHUP again and again while the other side drains.
        fds[npairs + 2 * k + i] = (struct pollfd){ events ? conns[k]->fd[i] : -1, events, 0 };
      }
    if (poll(fds, (nfds_t)(npairs + 2 * nconns), -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    int before = nconns; // connections accepted below are polled next round
    for (int k = 0; k < before; k++) {
      struct conn *c = conns[k];
      for (int i = 0; i < 2; i++)
        if ((fds[npairs + 2 * k + i].events & POLLIN) && fds[npairs + 2 * k + i].revents) fill(c, i);
      // Write at once rather than after another poll(); a blocked write is EAGAIN.
      for (int i = 0; i < 2 && !c->dead; i++) flush(c, i);
    }
    for (int k = 0; k < nconns; k++) {
      if (!conns[k]->dead) continue;
      close(conns[k]->fd[0]), close(conns[k]->fd[1]), free(conns[k]);
      conns[k--] = conns[--nconns];
      paused = 0;
    }
    for (int l = 0; l < npairs; l++) {
      if (!fds[l].revents) continue;
      for (;;) { // drain the backlog
        int client = accept4(listeners[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client >= 0) { open_conn(client, &targets[l]); continue; }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) paused = 1;
        if (errno != EINTR && errno != ECONNABORTED) break;
      }
    }
  }
}

int main(int argc, char **argv) {
  int a = 1;
  for (; a < argc && strcmp(argv[a], "--") != 0; a++) {
    char *end, *eq = strchr(argv[a], '=');
    long port = strtol(argv[a], &end, 10);
    if (!eq || end != eq || eq == argv[a] || port < 1 || port > 65535) fatal(argv[a], "expected PORT=SOCKETPATH");
    if (npairs == MAX_PAIRS) fatal(argv[a], "too many pairs");
    struct sockaddr_un *target = &targets[npairs];
    target->sun_family = AF_UNIX;
    if (!eq[1] || strlen(eq + 1) >= sizeof target->sun_path) fatal(argv[a], "bad socket path");
    strcpy(target->sun_path, eq + 1);

    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fatal("socket", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) fatal(argv[a], strerror(errno));
    if (listen(fd, 128) < 0) fatal(argv[a], strerror(errno));
    listeners[npairs++] = fd;
  }
  if (a + 1 >= argc) {
    fprintf(stderr, "usage: brig-relay PORT=SOCKETPATH [PORT=SOCKETPATH...] -- command [args...]\n");
    return 125;
  }

  if (npairs) {
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) fatal("fork", strerror(errno));
    if (pid == 0) {
      // Die with the command; it may have gone before prctl() took effect.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);
      // Own session: no controlling terminal, so no SIGINT/SIGTSTP/SIGHUP
      // from it, and kill(-pgid) aimed at the command's group misses us.
      setsid();
      // Hold none of the command's stdio: whoever reads its output sees EOF
      // when the command exits, not when we do.
      int null = open("/dev/null", O_RDWR | O_CLOEXEC);
      for (int fd = 0; fd < 3; fd++) null >= 0 ? dup2(null, fd) : close(fd);
      if (null > 2) close(null);
      signal(SIGPIPE, SIG_IGN); // only here: SIG_IGN would survive the command's exec
      // Two fds per connection: raise the soft fd limit as far as allowed.
      struct rlimit limit;
      if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max)
        limit.rlim_cur = limit.rlim_max, setrlimit(RLIMIT_NOFILE, &limit);
      relay();
    }
  }
  // The listeners are CLOEXEC: the command does not inherit them.
  execvp(argv[a + 1], argv + a + 1);
  int err = errno;
  fprintf(stderr, "brig-relay: %s: %s\n", argv[a + 1], strerror(err));
  return err == ENOENT || err == ENOTDIR ? 127 : 126;
}
