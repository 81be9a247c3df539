// One way for the addon's C files to throw a Node error from an errno:
// code (ENOENT…), message, errno (negative, as Node's own) and syscall.
#ifndef BRIG_SPAWN_ERRORS_H
#define BRIG_SPAWN_ERRORS_H
#include <node_api.h>

napi_value throw_errno(napi_env env, int err, const char *syscall);

#endif
