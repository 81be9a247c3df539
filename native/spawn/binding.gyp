{
  "targets": [
    {
      "target_name": "spawn",
      "sources": ["spawn.c", "daemon.c"],
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
      "sources": ["exec.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu99"],
      "defines": ["_GNU_SOURCE"]
    }
  ]
}
