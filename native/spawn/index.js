'use strict';
// The addon built by node-gyp at install (npm ci): see spawn.c. Beside it,
// the same build makes two executables: brig-relay (relay.c) and brig-exec (exec.c).
const path = require('node:path');
const addon = require('./build/Release/spawn.node');
addon.relayPath = path.join(__dirname, 'build', 'Release', 'brig-relay');
addon.execPath = path.join(__dirname, 'build', 'Release', 'brig-exec');
module.exports = addon;
