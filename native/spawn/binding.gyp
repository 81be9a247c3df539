{
  "targets": [
    {
      "target_name": "spawn",
      "sources": ["spawn.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"]
    }
  ]
}
