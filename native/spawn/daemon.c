// What `brig serve` and envd need that Node lacks: a listening unix socket as
// a bare fd (to hand to a jail's envd; a net.Server would accept on it itself,
// and unlink its path on close), FD_CLOEXEC on an inherited fd (envd's copy of
// that socket, so no command it starts inherits it), flock() (one daemon
// per state directory), and prctl(PR_SET_DUMPABLE) (envd's /proc entries
// closed to the sandbox's user, who is envd's own).
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <node_api.h>
#include "errors.h"

// listenUnix(path, backlog) -> fd: bound and listening, close-on-exec (only a spawn's stdio hands it on).
static napi_value ListenUnix(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  size_t length = 0;
  int32_t backlog = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, args[0], address.sun_path, sizeof address.sun_path, &length) != napi_ok ||
      napi_get_value_int32(env, args[1], &backlog) != napi_ok)
    return throw_errno(env, EINVAL, "listenUnix");
  // Too long for sun_path (it was cut), empty, or holding a NUL: refuse rather than bind elsewhere.
  if (length == 0 || length >= sizeof address.sun_path - 1 || strlen(address.sun_path) != length) return throw_errno(env, ENAMETOOLONG, "bind");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// lockExclusive(fd) -> true when this open file now holds the lock, false when another holds it.
static napi_value LockExclusive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, arg, &fd) != napi_ok || fd < 0) return throw_errno(env, EINVAL, "flock");
  int got;
  do got = flock(fd, LOCK_EX | LOCK_NB); while (got < 0 && errno == EINTR);
  if (got < 0 && errno != EWOULDBLOCK) return throw_errno(env, errno, "flock");
  napi_get_boolean(env, got == 0, &result);
  return result;
}

// closeOnExec(fd): set FD_CLOEXEC, so no program started later inherits it.
static napi_value CloseOnExec(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, arg, &fd) != napi_ok || fd < 0) return throw_errno(env, EINVAL, "fcntl");
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return throw_errno(env, errno, "fcntl");
  return NULL;
}

// notDumpable(): this process's /proc entries (environ, mem, fd, maps) become root's, so another
// process of the same uid cannot read its environment or memory, or reopen its files. Cleared by
// exec: the programs it starts are dumpable as usual.
static napi_value NotDumpable(napi_env env, napi_callback_info info) {
  (void)info;
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return throw_errno(env, errno, "prctl");
  return NULL;
}

void brig_daemon_init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "listenUnix", NAPI_AUTO_LENGTH, ListenUnix, NULL, &fn);
  napi_set_named_property(env, exports, "listenUnix", fn);
  napi_create_function(env, "lockExclusive", NAPI_AUTO_LENGTH, LockExclusive, NULL, &fn);
  napi_set_named_property(env, exports, "lockExclusive", fn);
  napi_create_function(env, "closeOnExec", NAPI_AUTO_LENGTH, CloseOnExec, NULL, &fn);
  napi_set_named_property(env, exports, "closeOnExec", fn);
  napi_create_function(env, "notDumpable", NAPI_AUTO_LENGTH, NotDumpable, NULL, &fn);
  napi_set_named_property(env, exports, "notDumpable", fn);
}
