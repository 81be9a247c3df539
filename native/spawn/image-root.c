// An image sandbox's root, built by brig-exec (running as host root) just
// before it drops to the sandbox's host ids and execs bubblewrap:
//
//   (dir: root/ the mount point, l/I the layers, w/I the mapped binds; rw_dir: upper/ and work/, the overlay's own)
//   0. each mapped bind (the caller's workspace of `brig run --image`) cloned
//      id-mapped while still in the host's mount namespace (clone_mapped);
//   1. a mount namespace of its own, a slave of the host's: every mount below
//      lives only as long as the sandbox, and none propagates to the host;
//   2. a user namespace owned by the jail's own host ids, mapping ids 0 … count-1
//      onto base … base+count-1 (a range needs root to write the maps;
//      bubblewrap alone maps one id). Nested user namespaces are capped at 0
//      inside it;
//   3. each layer id-mapped through that namespace (a file owned by 0 in the
//      store is owned by the sandbox's root, by base on the host) and mounted
//      read-only, nosuid, nodev at dir/l/I;
//   4. an overlay of those layers with rw_dir/upper (the sandbox's own writes)
//      at dir/root, and the mapped binds attached at dir/w/I;
//   5. every path bubblewrap will mount on (--no-link-at) walked inside the
//      root: a link on the way is refused, since bubblewrap follows it, even
//      to /oldroot/… (the host's root while it sets up) — the image is hostile;
//   6. the namespace and the root handed on as fds for bubblewrap's
//      --userns and --bind-fd, then every id dropped to the jail's own
//      (base + its uid inside: the namespace's owner).
//
// Layers are shared by every sandbox of an image and never written; the
// per-sandbox id range means no two sandboxes own the same host ids.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image-root.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what, const char *detail) {
  fprintf(stderr, "brig-exec: image root: %s: %s\n", what, detail);
  exit(125);
}

static void die_errno(const char *what) { die(what, strerror(errno)); }

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die_errno(path);
  ssize_t length = (ssize_t)strlen(text);
  if (write(fd, text, (size_t)length) != length) die_errno(path);
  close(fd);
}

static void move_to(int fd, int target) {
  if (fd == target) return;
  if (dup2(fd, target) < 0) die_errno("dup2");
  close(fd);
}

// Raw syscalls: the child below must not run glibc's set*id broadcast machinery.
static void become(uid_t uid, gid_t gid) {
  if (syscall(SYS_setgroups, 0, NULL) < 0) die_errno("setgroups");
  if (syscall(SYS_setresgid, gid, gid, gid) < 0) die_errno("setresgid");
  if (syscall(SYS_setresuid, uid, uid, uid) < 0) die_errno("setresuid");
}

// A child as the jail's own host ids unshares a user namespace (so they own it:
// bubblewrap, running as them, may then join it and take the same ids inside,
// group first, without being root in between) and waits while this process
// writes its maps.
static int user_namespace(const char *uid_map, const char *gid_map, uid_t owner, gid_t owner_group, int cap_nested) {
  int ready[2], mapped[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(mapped, O_CLOEXEC) < 0) die_errno("pipe");
  pid_t child = fork();
  if (child < 0) die_errno("fork");
  char byte = 0;
  if (child == 0) {
    close(ready[0]);
    close(mapped[1]);
    become(owner, owner_group);
    if (unshare(CLONE_NEWUSER) < 0) die_errno("unshare(CLONE_NEWUSER)");
    if (write(ready[1], &byte, 1) != 1) _exit(125);
    if (read(mapped[0], &byte, 1) != 1) _exit(125);
    // Mapped now, and root in it: no user namespace may be made under this one.
    if (cap_nested) write_file("/proc/sys/user/max_user_namespaces", "0");
    _exit(0);
  }
  close(ready[1]);
  close(mapped[0]);
  if (read(ready[0], &byte, 1) != 1) die("user namespace", "the child died before unsharing");
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
  write_file(path, uid_map);
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
  write_file(path, gid_map);
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_errno(path);
  if (write(mapped[1], &byte, 1) != 1) die_errno("user namespace");
  int status;
  if (waitpid(child, &status, 0) < 0) die_errno("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("user namespace", "the child failed to cap nested namespaces");
  close(ready[0]);
  close(mapped[1]);
  return fd;
}

static void mount_layer(const char *layer, int userns, const char *target) {
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, layer, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
  if (tree < 0) die(layer, strerror(errno));
  struct mount_attr attr = {
    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    .userns_fd = (unsigned long long)userns,
  };
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
    die("id-mapping a layer (the store's filesystem must support idmapped mounts: ext4, xfs, btrfs, tmpfs)", strerror(errno));
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) die(target, strerror(errno));
  close(tree);
}

// A host directory (the caller's workspace) bound so that its owner's files are
// the jail user's inside and the jail user's writes are its owner's on disk: an
// id-mapped mount through a namespace mapping the owner's id onto the jail
// user's host id. The rest of the jail's range maps to itself, so files its
// other users (root, apt's _apt) make there keep working as in a plain bind;
// any other host owner shows as nobody. Cloned while this process is still in
// the host's mount namespace (a tree of another namespace cannot be cloned),
// attached later at w/I, and handed on as an O_PATH fd in place of the source.
static void range_map(char *out, size_t size, unsigned host, unsigned jail, unsigned base, unsigned count) {
  unsigned below = jail - base, above = base + count - jail - 1;
  int length = snprintf(out, size, "%u %u 1\n", host, jail);
  if (below > 0) length += snprintf(out + length, size - (size_t)length, "%u %u %u\n", base, base, below);
  if (above > 0) snprintf(out + length, size - (size_t)length, "%u %u %u\n", jail + 1, jail + 1, above);
}

static int clone_mapped(const struct mapped_bind *bind, const struct image_root *image) {
  char uid_map[128], gid_map[128];
  range_map(uid_map, sizeof uid_map, (unsigned)bind->host_uid, (unsigned)image->owner_uid, (unsigned)image->id_base, image->id_count);
  range_map(gid_map, sizeof gid_map, (unsigned)bind->host_gid, (unsigned)image->owner_gid, (unsigned)image->id_base, image->id_count);
  int userns = user_namespace(uid_map, gid_map, 0, 0, 0);
  int tree = (int)syscall(SYS_open_tree, bind->source_fd, "", AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) die("cloning a mapped bind's source", strerror(errno));
  struct mount_attr attr = {
    .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    .userns_fd = (unsigned long long)userns,
  };
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) die("id-mapping a bind (its filesystem must support idmapped mounts)", strerror(errno));
  close(userns);
  // The unmapped source must not reach the jail: only the mapped mount goes on.
  close(bind->source_fd);
  return tree;
}

static void attach_mapped(int tree, const struct mapped_bind *bind, int index) {
  char target[16];
  snprintf(target, sizeof target, "w/%d", index);
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) die(target, strerror(errno));
  close(tree);
  int mounted = open(target, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (mounted < 0) die_errno(target);
  move_to(mounted, bind->target_fd);
  fcntl(bind->target_fd, F_SETFD, 0);
}

// Walks target's components from the root, one openat(O_NOFOLLOW) at a time: a link fails with ELOOP
// (or ENOTDIR, O_PATH on a link's last component gives the link itself: checked with fstat). A missing
// component ends the walk: bubblewrap makes the rest, in the root.
static void refuse_links(int root, const char *target) {
  char path[PATH_MAX];
  if (strlen(target) >= sizeof path) die("a mount point's path is too long", target);
  strcpy(path, target);
  int at = dup(root);
  if (at < 0) die_errno("dup");
  for (char *name = strtok(path, "/"); name; name = strtok(NULL, "/")) {
    int next = openat(at, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(at);
    if (next < 0 && errno == ENOENT) return;
    if (next < 0) die("looking at a mount point in the image", target);
    struct stat stats;
    if (fstat(next, &stats) < 0) die_errno("fstat");
    if (S_ISLNK(stats.st_mode)) die("the image has a link where brig mounts (or on its way), and brig will not follow it", target);
    at = next;
  }
  close(at);
}

void make_image_root(const struct image_root *image) {
  if (image->layer_count < 1) die("layers", "at least one is needed");
  if (image->owner_uid < image->id_base || image->owner_uid - image->id_base >= image->id_count || image->owner_gid < image->id_base || image->owner_gid - image->id_base >= image->id_count) die("--owner", "must lie in the --idmap range");
  // Overlay options are a comma-separated list: a path with a separator in it would be another option.
  if (!image->rw_dir || image->rw_dir[0] != '/' || strlen(image->rw_dir) >= PATH_MAX || strpbrk(image->rw_dir, ",:\\")) die("--rw-dir must be an absolute path without , : or \\", image->rw_dir ? image->rw_dir : "(none)");
  // The fds to hand on may be closed slots: hold them with /dev/null, so nothing opened below lands there.
  int placeholder = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (placeholder < 0 || dup2(placeholder, image->userns_fd) < 0 || dup2(placeholder, image->root_fd) < 0) die_errno("reserving fds");
  for (int i = 0; i < image->bind_count; i++) {
    if (dup2(placeholder, image->binds[i].target_fd) < 0) die_errno("reserving fds");
  }
  int reserved = placeholder == image->userns_fd || placeholder == image->root_fd;
  for (int i = 0; i < image->bind_count; i++) reserved |= placeholder == image->binds[i].target_fd;
  if (!reserved) close(placeholder);
  int trees[IMAGE_MAX_BINDS];
  for (int i = 0; i < image->bind_count; i++) {
    const struct mapped_bind *bind = &image->binds[i];
    // An owner inside the range would be mapped twice; such a directory is the jail's already (a plain bind serves).
    if ((bind->host_uid >= image->id_base && bind->host_uid - image->id_base < image->id_count) || (bind->host_gid >= image->id_base && bind->host_gid - image->id_base < image->id_count)) {
      die("--map-bind", "the directory's owner is in the jail's own range: bind it plainly");
    }
    trees[i] = clone_mapped(bind, image);
  }
  if (unshare(CLONE_NEWNS) < 0) die_errno("unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die_errno("making / a slave");
  char range[96];
  snprintf(range, sizeof range, "0 %u %u\n", (unsigned)image->id_base, image->id_count);
  int userns = user_namespace(range, range, image->owner_uid, image->owner_gid, 1);
  if (chdir(image->dir) < 0) die(image->dir, strerror(errno));
  // Relative paths keep the overlay's options short whatever the store's path. redirect_dir and
  // metacopy stay off: a commit (layerTar) reads the upper as plain files and whiteouts.
  char lowerdir[IMAGE_MAX_LAYERS * 8 + 16] = "lowerdir=";
  for (int i = image->layer_count - 1; i >= 0; i--) {
    char target[16];
    snprintf(target, sizeof target, "l/%d", i);
    mount_layer(image->layers[i], userns, target);
    strcat(lowerdir, target);
    if (i > 0) strcat(lowerdir, ":");
  }
  char options[sizeof lowerdir + 2 * PATH_MAX + 32];
  snprintf(options, sizeof options, "%s,upperdir=%s/upper,workdir=%s/work,redirect_dir=off,metacopy=off", lowerdir, image->rw_dir, image->rw_dir);
  if (mount("overlay", "root", "overlay", MS_NOSUID | MS_NODEV, options) < 0) die("mounting the overlay", strerror(errno));
  for (int i = 0; i < image->bind_count; i++) attach_mapped(trees[i], &image->binds[i], i);
  int root = open("root", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root < 0) die_errno("root");
  for (int i = 0; i < image->target_count; i++) refuse_links(root, image->targets[i]);
  if (chdir("/") < 0) die_errno("chdir /");
  move_to(userns, image->userns_fd);
  move_to(root, image->root_fd);
  // The fds handed on must survive the exec; the rest stay close-on-exec.
  fcntl(image->userns_fd, F_SETFD, 0);
  fcntl(image->root_fd, F_SETFD, 0);
  become(image->owner_uid, image->owner_gid);
}
