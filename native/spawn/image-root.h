// The root filesystem of an image sandbox, made by brig-exec before it execs
// bubblewrap (see image-root.c).
#ifndef BRIG_IMAGE_ROOT_H
#define BRIG_IMAGE_ROOT_H

#include <sys/types.h>

#define IMAGE_MAX_LAYERS 128
#define IMAGE_MAX_BINDS 8
#define IMAGE_MAX_TARGETS 512

struct mapped_bind {
  int source_fd;  // the host directory, opened O_PATH by brig without following links
  int target_fd;  // where its id-mapped mount is handed on
  uid_t host_uid; // its owner on the host: the jail's user inside
  gid_t host_gid;
};

struct image_root {
  const char *dir;                      // holds root/ (the mount point) and l/0 … l/N-1
  const char *rw_dir;                   // holds upper/ (the sandbox's writes) and work/ (overlay's)
  const char *layers[IMAGE_MAX_LAYERS]; // read-only layer directories, lowest first
  int layer_count;
  uid_t id_base;                        // host id that uid/gid 0 inside maps to
  unsigned id_count;                    // how many ids the range holds
  uid_t owner_uid;                      // the jail's own host ids (base + its ids inside): it owns the namespace
  gid_t owner_gid;
  int userns_fd;                        // where the sandbox's user namespace is handed on
  int root_fd;                          // where its merged root (O_PATH) is handed on
  struct mapped_bind binds[IMAGE_MAX_BINDS];
  int bind_count;
  const char *targets[IMAGE_MAX_TARGETS];  // where bubblewrap mounts inside the root: no link may be on the way
  int target_count;
};

// Does everything or exits 125 with a message: never returns half done.
void make_image_root(const struct image_root *image);

#endif
