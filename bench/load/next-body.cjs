'use strict';
// autocannon `setupRequest` for worker threads (they `require` a path; functions cannot
// cross threads). Each worker claims a distinct slot (an exclusive-create file next to the
// bodies) and takes every n-th body from its slot on, so two workers never present the
// same attestation at the same moment (which Leash's identity cache would turn into a hit).
const { openSync, closeSync, readFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const file = process.env.LEASH_BENCH_BODIES_FILE;
if (!file) throw new Error('LEASH_BENCH_BODIES_FILE is not set');
const { bodies, workers } = JSON.parse(readFileSync(file, 'utf8'));
const stride = Math.max(1, workers);

function claimSlot() {
  for (let slot = 0; ; slot++) {
    try {
      closeSync(openSync(join(dirname(file), `slot-${slot}`), 'wx'));
      return slot;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
  }
}

let next = claimSlot() % stride;

module.exports = function setupRequest(req) {
  const body = bodies[next % bodies.length];
  next += stride;
  return { ...req, body };
};
