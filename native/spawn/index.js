'use strict';
// The addon built by node-gyp at install (npm ci): see spawn.c. Beside it,
// the same build makes brig-relay, an executable (see relay.c).
const path = require('node:path');
const addon = require('./build/Release/spawn.node');
addon.relayPath = path.join(__dirname, 'build', 'Release', 'brig-relay');
module.exports = addon;
