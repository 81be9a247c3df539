// What an overlay-ready layer needs that Node lacks (docs/images.md, "The
// layer format"): overlayfs marks a deleted lower file with a whiteout, a
// character device 0/0 of that name, and a directory that hides everything
// below it with the xattr trusted.overlay.opaque=y. Node has neither mknod
// nor xattrs. None of these follows a symlink in the last component; the
// callers (archive.ts, layer-tar.ts) make sure no parent is one.
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <node_api.h>
#include "errors.h"

#define OPAQUE_XATTR "trusted.overlay.opaque"

// The one path argument as a C string; false (with a pending EINVAL error) when it is not a string, is empty or holds a NUL.
static bool path_arg(napi_env env, napi_callback_info info, char *path, size_t size, const char *syscall) {
  size_t argc = 1, length = 0;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, arg, path, size, &length) != napi_ok || length == 0 || length >= size - 1 ||
      strlen(path) != length) {
    throw_errno(env, EINVAL, syscall);
    return false;
  }
  return true;
}

// makeWhiteout(path): a character device 0/0, mode 0, where nothing exists yet (EEXIST otherwise).
static napi_value MakeWhiteout(napi_env env, napi_callback_info info) {
  char path[4096];
  if (!path_arg(env, info, path, sizeof path, "mknod")) return NULL;
  if (mknod(path, S_IFCHR | 0000, makedev(0, 0)) < 0) return throw_errno(env, errno, "mknod");
  return NULL;
}

// setOpaque(dirPath): trusted.overlay.opaque=y on the directory itself (lsetxattr: a symlink there is not followed, and refuses it).
static napi_value SetOpaque(napi_env env, napi_callback_info info) {
  char path[4096];
  if (!path_arg(env, info, path, sizeof path, "lsetxattr")) return NULL;
  struct stat st;
  if (lstat(path, &st) < 0) return throw_errno(env, errno, "lstat");
  if (!S_ISDIR(st.st_mode)) return throw_errno(env, ENOTDIR, "lsetxattr");
  if (lsetxattr(path, OPAQUE_XATTR, "y", 1, 0) < 0) return throw_errno(env, errno, "lsetxattr");
  return NULL;
}

// isOpaque(dirPath) -> true when the directory carries trusted.overlay.opaque=y; false when it has no such xattr or is not a directory.
static napi_value IsOpaque(napi_env env, napi_callback_info info) {
  char path[4096];
  if (!path_arg(env, info, path, sizeof path, "lgetxattr")) return NULL;
  char value[8];
  bool opaque = false;
  ssize_t got = lgetxattr(path, OPAQUE_XATTR, value, sizeof value);
  if (got == 1 && value[0] == 'y') opaque = true;
  // ENODATA: no such xattr; ENOTSUP: a filesystem without xattrs has no opaque directories either
  else if (got < 0 && errno != ENODATA && errno != ENOTSUP) return throw_errno(env, errno, "lgetxattr");
  napi_value result;
  napi_get_boolean(env, opaque, &result);
  return result;
}

void brig_layerfs_init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "makeWhiteout", NAPI_AUTO_LENGTH, MakeWhiteout, NULL, &fn);
  napi_set_named_property(env, exports, "makeWhiteout", fn);
  napi_create_function(env, "setOpaque", NAPI_AUTO_LENGTH, SetOpaque, NULL, &fn);
  napi_set_named_property(env, exports, "setOpaque", fn);
  napi_create_function(env, "isOpaque", NAPI_AUTO_LENGTH, IsOpaque, NULL, &fn);
  napi_set_named_property(env, exports, "isOpaque", fn);
}
