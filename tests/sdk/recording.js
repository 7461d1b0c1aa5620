// What the Node SDK scripts in this folder share: the SDK's own Node transport, wrapped to
// note every answer osprey gives ({status, items}) so the script can print them and the Rust
// test can check them. The envelope still goes out through @sentry/node's default transport.
'use strict';

const Sentry = require('@sentry/node');

const responses = [];
// Functions called with every envelope before it is sent (a script can read its header).
const envelopeObservers = [];

function recordingTransport(options) {
  const inner = Sentry.makeNodeTransport(options);
  return {
    send: async (envelope) => {
      const items = envelope[1].map((item) => item[0].type);
      envelopeObservers.forEach((observe) => observe(envelope, items));
      const response = await inner.send(envelope);
      responses.push({ status: response && response.statusCode, items });
      return response;
    },
    flush: (timeout) => inner.flush(timeout),
  };
}

// True when at least one envelope was sent and every answer was 2xx.
function all2xx() {
  return responses.length > 0 && responses.every((r) => r.status >= 200 && r.status < 300);
}

module.exports = { responses, envelopeObservers, recordingTransport, all2xx };
