// posix_spawn for envd: clone(CLONE_VM|CLONE_VFORK) + exec, no page-table copy
// of the parent. The child leads its own session, has its signal mask emptied
// and every disposition reset, and gets pipes (or /dev/null for stdin) on
// 0/1/2. Exec errors come back synchronously. The caller reaps with reap().
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <node_api.h>
#include "errors.h"

napi_value throw_errno(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err);
  napi_value code, message, error, value;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  napi_throw(env, error);
  return NULL;
}

// A JS string as a malloc'd C string; NULL (and *bad set) if it is not a string or holds a NUL.
static char *c_string(napi_env env, napi_value value, int *bad) {
  size_t length, copied;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return (*bad = 1), NULL;
  char *text = malloc(length + 1);
  if (!text) return (*bad = 1), NULL;
  napi_get_value_string_utf8(env, value, text, length + 1, &copied);
  if (strlen(text) != copied) return free(text), (*bad = 1), NULL;
  return text;
}

// A JS array of strings as a NULL-terminated, malloc'd vector.
static char **c_vector(napi_env env, napi_value array, int *bad) {
  uint32_t count = 0;
  if (napi_get_array_length(env, array, &count) != napi_ok) return (*bad = 1), NULL;
  char **vector = calloc(count + 1, sizeof(char *));
  if (!vector) return (*bad = 1), NULL;
  for (uint32_t i = 0; i < count && !*bad; i++) {
    napi_value item;
    napi_get_element(env, array, i, &item);
    vector[i] = c_string(env, item, bad);
  }
  return vector;
}

static void free_vector(char **vector) {
  if (!vector) return;
  for (char **item = vector; *item; item++) free(*item);
  free(vector);
}

// execvp's search, with the child's PATH and relative entries taken from the child's cwd.
static int resolve(const char *file, char **envp, const char *cwd, char **out) {
  if (strchr(file, '/')) return (*out = strdup(file)) ? 0 : ENOMEM;
  const char *path = "/usr/bin:/bin";
  for (char **item = envp; *item; item++) if (strncmp(*item, "PATH=", 5) == 0) path = *item + 5;
  int found = ENOENT;
  size_t file_length = strlen(file), cwd_length = strlen(cwd);
  char *candidate = malloc(strlen(path) + cwd_length + file_length + 4);
  if (!candidate) return ENOMEM;
  for (const char *dir = path;; dir++) {
    const char *end = strchrnul(dir, ':');
    size_t n = 0;
    if (*dir != '/') memcpy(candidate, cwd, cwd_length), candidate[cwd_length] = '/', n = cwd_length + 1;
    memcpy(candidate + n, dir, (size_t)(end - dir));
    n += (size_t)(end - dir);
    if (n && candidate[n - 1] != '/') candidate[n++] = '/';
    memcpy(candidate + n, file, file_length + 1);
    struct stat st;
    if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(candidate, X_OK) == 0) return (*out = candidate), 0;
      found = EACCES;
    }
    if (!*end) break;
    dir = end;
  }
  free(candidate);
  return found;
}

// A pipe whose ends are both above 2, so dup2 onto 0/1/2 cannot clobber another end.
static int make_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  for (int i = 0; i < 2; i++) {
    if (fds[i] > 2) continue;
    int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    if (moved < 0) { int err = errno; close(fds[0]); close(fds[1]); return err; }
    close(fds[i]);
    fds[i] = moved;
  }
  return 0;
}

// spawn(file, argv, envp, cwd, stdinPipe) -> [pid, stdinFd (-1 without), stdoutFd, stderrFd]
static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 5) return throw_errno(env, EINVAL, "spawn");
  int bad = 0;
  bool stdin_pipe = false;
  napi_get_value_bool(env, args[4], &stdin_pipe);
  char *file = c_string(env, args[0], &bad), *cwd = bad ? NULL : c_string(env, args[3], &bad);
  char **argv = bad ? NULL : c_vector(env, args[1], &bad), **envp = bad ? NULL : c_vector(env, args[2], &bad);
  char *path = NULL;
  int err = bad ? EINVAL : resolve(file, envp, cwd, &path);
  const char *syscall = bad ? "spawn" : "posix_spawn";
  int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
  pid_t pid = -1;
  if (!err && stdin_pipe) err = make_pipe(in), syscall = "pipe2";
  if (!err) err = make_pipe(out), syscall = "pipe2";
  if (!err) err = make_pipe(errp), syscall = "pipe2";
  if (!err) {
    syscall = "posix_spawn";
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    if (stdin_pipe) posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, errp[1], 2);
    posix_spawn_file_actions_addchdir_np(&actions, cwd);
    err = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    if (err == ENOEXEC) {  // a script without #!: run it with /bin/sh, as execvp (and so libuv) does
      size_t count = 0;
      while (argv[count]) count++;
      char **sh = calloc(count + 2, sizeof(char *));
      if (!sh) err = ENOMEM;
      else {
        sh[0] = "/bin/sh", sh[1] = path;
        for (size_t i = 1; i < count; i++) sh[i + 1] = argv[i];
        err = posix_spawn(&pid, "/bin/sh", &actions, &attr, sh, envp);
        free(sh);
      }
    }
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  // The child's ends are its own now (or nobody's).
  if (in[0] >= 0) close(in[0]);
  if (out[1] >= 0) close(out[1]);
  if (errp[1] >= 0) close(errp[1]);
  if (err) {
    if (in[1] >= 0) close(in[1]);
    if (out[0] >= 0) close(out[0]);
    if (errp[0] >= 0) close(errp[0]);
  }
  free(file); free(cwd); free(path); free_vector(argv); free_vector(envp);
  if (err) return throw_errno(env, err, syscall);
  napi_value result, value;
  int values[4] = {pid, in[1], out[0], errp[0]};
  napi_create_array_with_length(env, 4, &result);
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_int32(env, values[i], &value);
    napi_set_element(env, result, i, value);
  }
  return result;
}

// reap(pid) -> null while it runs, else [exitCode, signal]: [code, 0] on exit, [-1, signo] on a signal, [-1, 0] if it is not ours to wait for.
static napi_value Reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result, value;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  int32_t pid = 0;
  if (argc < 1 || napi_get_value_int32(env, arg, &pid) != napi_ok || pid <= 0) return throw_errno(env, EINVAL, "waitpid");
  int status = 0;
  pid_t got;
  do got = waitpid(pid, &status, WNOHANG); while (got < 0 && errno == EINTR);
  if (got == 0) {
    napi_get_null(env, &result);
    return result;
  }
  int pair[2] = {-1, 0};
  if (got > 0 && WIFEXITED(status)) pair[0] = WEXITSTATUS(status);
  else if (got > 0 && WIFSIGNALED(status)) pair[1] = WTERMSIG(status);
  napi_create_array_with_length(env, 2, &result);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, pair[i], &value);
    napi_set_element(env, result, i, value);
  }
  return result;
}

void brig_daemon_init(napi_env env, napi_value exports);  // daemon.c
void brig_layerfs_init(napi_env env, napi_value exports);  // layerfs.c

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  brig_daemon_init(env, exports);
  brig_layerfs_init(env, exports);
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &fn);
  napi_set_named_property(env, exports, "spawn", fn);
  napi_create_function(env, "reap", NAPI_AUTO_LENGTH, Reap, NULL, &fn);
  napi_set_named_property(env, exports, "reap", fn);
  return exports;
}
