// brig-init -- PROGRAM [ARGS...]
//
// The first process of a gVisor sandbox (src/drivers/gvisor): runsc makes
// the container's first process pid 1, and pid 1 inherits every orphan. A
// program that was not written to be pid 1 (envd is Node; a shell) never
// waits for those, so each orphan that exits stays a zombie until the
// sandbox ends, and signals sent to pid 1 without a handler are ignored. So
// brig-init is pid 1 instead: it starts PROGRAM as its child, passes on the
// signals a caller sends to stop or resize it, reaps every process that ends,
// and when PROGRAM ends, ends with its status (128 + N for signal N, as a
// shell reports it); what is left then dies with the sandbox's pid namespace.
// Statically linked: it runs on any root filesystem.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child = 0;

static void forward(int signal) {
  if (child > 0) kill(child, signal);
}

int main(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[1], "--") != 0) {
    fprintf(stderr, "usage: brig-init -- PROGRAM [ARGS...]\n");
    return 125;
  }
  static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = forward;
  sigemptyset(&action.sa_mask);
  // Block them until the handlers and the child's pid are in place: nothing sent meanwhile is lost.
  sigset_t all, previous;
  sigemptyset(&all);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&all, forwarded[i]);
  sigprocmask(SIG_BLOCK, &all, &previous);
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &action, NULL);

  pid_t started = fork();
  if (started < 0) {
    perror("brig-init: fork");
    return 125;
  }
  if (started == 0) {
    struct sigaction defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &defaults, NULL);
    sigprocmask(SIG_SETMASK, &previous, NULL);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "brig-init: %s: %s\n", argv[2], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  child = started;
  sigprocmask(SIG_SETMASK, &previous, NULL);
  for (;;) {
    int status;
    pid_t ended = waitpid(-1, &status, 0);
    if (ended < 0) {
      if (errno == EINTR) continue;
      return 125; // ECHILD: cannot happen while the child is ours
    }
    if (ended != child) continue; // an orphan, reaped
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  }
}
