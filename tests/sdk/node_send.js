// Sends one error, one message and one transaction with spans to a DSN with the real
// @sentry/node SDK, the way an application would, and prints what happened as one JSON object:
//
//   {"error": ID, "message": ID, "transaction": ID,
//    "responses": [{"status": 200, "items": ["event"]}, ...]}
//
// Usage: node node_send.js DSN [--stream]   (or the DSN in $SENTRY_DSN; @sentry/node is found
// through NODE_PATH, which the Rust test harness points at the tools cache).
//
// @sentry/node 11 streams spans by default (`traceLifecycle: 'stream'`: `span` items of
// content type application/vnd.sentry.items.span.v2+json, no transaction event). Without
// --stream this script asks for the classic transaction event (`traceLifecycle: 'static'`);
// with --stream it keeps the SDK default and prints the streamed trace's id as "trace_id"
// instead of a transaction id.
//
// Every HTTP answer the SDK's own Node transport receives is recorded; the script exits 1 if
// any answer was not 2xx or if an id is missing, since the SDK itself only logs a rejection.
'use strict';

const Sentry = require('@sentry/node');
const { responses, recordingTransport, envelopeObservers } = require('./recording');

const args = process.argv.slice(2);
const stream = args.includes('--stream');
const dsn = args.find((a) => !a.startsWith('--')) || process.env.SENTRY_DSN;
if (!dsn) {
  console.error('usage: node node_send.js DSN (or set SENTRY_DSN)');
  process.exit(2);
}

const ids = {};
envelopeObservers.push((envelope, items) => {
  if (items.includes('span') && envelope[0].trace) {
    ids.trace_id = envelope[0].trace.trace_id;
  }
});

function failInCheckout(cart) {
  // A real exception with a real stack (several frames).
  return Object.keys(cart).map((name) => cart[name].price.amount);
}

async function main() {
  const options = {
    dsn,
    transport: recordingTransport,
    tracesSampleRate: 1.0,
    release: 'osprey-test@1.0.0',
    environment: 'test',
    sendClientReports: false,
    traceLifecycle: stream ? 'stream' : 'static',
  };
  if (!stream) {
    options.beforeSendTransaction = (event) => {
      ids.transaction = event.event_id;
      return event;
    };
  }
  Sentry.init(options);
  Sentry.setUser({ id: 'u-42', email: 'user@example.com' });
  Sentry.setTag('sdk_test', 'node');

  try {
    failInCheckout({ apple: {} });
  } catch (err) {
    ids.error = Sentry.captureException(err);
  }
  ids.message = Sentry.captureMessage('osprey node message', 'warning');

  Sentry.startSpan({ name: 'GET /checkout', op: 'http.server', forceTransaction: true }, () => {
    Sentry.startSpan({ name: 'SELECT * FROM carts', op: 'db.query' }, () => {});
    Sentry.startSpan({ name: 'GET /prices', op: 'http.client' }, () => {
      Sentry.startSpan({ name: 'json', op: 'serialize' }, () => {});
    });
  });

  await Sentry.flush(15000);
  await Sentry.close(15000);

  const wanted = ['error', 'message', stream ? 'trace_id' : 'transaction'];
  const allIds = wanted.every((k) => typeof ids[k] === 'string' && ids[k]);
  const all2xx = responses.length > 0 && responses.every((r) => r.status >= 200 && r.status < 300);
  const ok = allIds && all2xx && responses.length >= 3;
  console.log(JSON.stringify({ ...ids, responses }));
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
