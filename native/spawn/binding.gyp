{
  "targets": [
    {
      "target_name": "spawn",
      "sources": ["spawn.c", "daemon.c", "layerfs.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"]
    },
    {
      "target_name": "brig-relay",
      "type": "executable",
      "sources": ["relay.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu99"],
      "defines": ["_GNU_SOURCE"]
    },
    {
      "target_name": "brig-exec",
      "type": "executable",
      "sources": ["exec.c", "image-root.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu99"],
      "ldflags": ["-static"],
      "defines": ["_GNU_SOURCE"]
    },
    {
      "target_name": "brig-init",
      "type": "executable",
      "sources": ["init.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu99"],
      "ldflags": ["-static"],
      "defines": ["_GNU_SOURCE"]
    },
    {
      "target_name": "brig-vm-init",
      "type": "executable",
      "sources": ["vm-init.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu99"],
      "ldflags": ["-static"],
      "defines": ["_GNU_SOURCE"]
    },
    {
      "target_name": "brig-statx",
      "type": "shared_library",
      "product_prefix": "",
      "product_extension": "so",
      "sources": ["statx-compat.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fPIC"],
      "defines": ["_GNU_SOURCE"]
    }
  ]
}
