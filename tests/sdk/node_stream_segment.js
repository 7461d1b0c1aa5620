// Streams one segment span with many children through the real @sentry/node SDK (its default
// `traceLifecycle: 'stream'`) and prints what happened as one JSON object:
//
//   {"trace_id": ID, "span_items": [1000, 201], "responses": [{"status": 200, "items": ["span"]}, ...]}
//
// Usage: node node_stream_segment.js DSN CHILDREN   (@sentry/node is found through NODE_PATH)
//
// The SDK buffers the finished spans of a trace and flushes them every 5 s and every 1000
// spans, so with more than 999 children the first envelope holds children only and their
// segment span comes in a later one: the server must still put every child into the
// segment's transaction. `span_items` lists the item_count of each span item sent.
'use strict';

const Sentry = require('@sentry/node');
const { responses, recordingTransport, envelopeObservers } = require('./recording');

const args = process.argv.slice(2);
const dsn = args[0] || process.env.SENTRY_DSN;
const children = parseInt(args[1] || '1200', 10);
if (!dsn || !(children >= 0)) {
  console.error('usage: node node_stream_segment.js DSN CHILDREN');
  process.exit(2);
}

const report = { span_items: [] };
envelopeObservers.push((envelope) => {
  for (const [header] of envelope[1]) {
    if (header.type === 'span') {
      report.span_items.push(header.item_count);
      if (envelope[0].trace) {
        report.trace_id = envelope[0].trace.trace_id;
      }
    }
  }
});

async function main() {
  Sentry.init({
    dsn,
    transport: recordingTransport,
    tracesSampleRate: 1.0,
    release: 'osprey-test@1.0.0',
    environment: 'test',
    sendClientReports: false,
  });
  Sentry.startSpan({ name: 'GET /report', op: 'http.server', forceTransaction: true }, () => {
    for (let i = 0; i < children; i++) {
      Sentry.startSpan({ name: `SELECT ${i}`, op: 'db.query' }, () => {});
    }
  });
  await Sentry.flush(15000);
  await Sentry.close(15000);
  const all2xx = responses.length > 0 && responses.every((r) => r.status >= 200 && r.status < 300);
  console.log(JSON.stringify({ ...report, responses }));
  process.exit(all2xx && report.trace_id ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
