'use strict';
// The addon built by node-gyp at install (npm ci): see spawn.c. Beside it,
// the same build makes two executables, brig-relay (relay.c) and brig-exec (exec.c),
// and, for gVisor sandboxes, brig-init (init.c, their pid 1) and brig-statx.so
// (statx-compat.c, preloaded there); for microVMs, brig-vm-init (vm-init.c, the
// guest's pid 1, packed into the initramfs).
const path = require('node:path');
const addon = require('./build/Release/spawn.node');
addon.relayPath = path.join(__dirname, 'build', 'Release', 'brig-relay');
addon.execPath = path.join(__dirname, 'build', 'Release', 'brig-exec');
addon.initPath = path.join(__dirname, 'build', 'Release', 'brig-init');
addon.statxCompatPath = path.join(__dirname, 'build', 'Release', 'brig-statx.so');
addon.vmInitPath = path.join(__dirname, 'build', 'Release', 'brig-vm-init');
module.exports = addon;
