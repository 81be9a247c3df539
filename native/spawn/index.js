'use strict';
// The addon built by node-gyp at install (npm ci): see spawn.c.
module.exports = require('./build/Release/spawn.node');
