// The second service of a distributed trace, with the real @sentry/node SDK in its default
// configuration (span streaming): continues the trace from the `sentry-trace` and `baggage`
// headers the first service sent (tests/sdk/python_trace.py), as a server transaction
// `POST /api/pay` with a `db.query` child span in which an error is captured. Prints:
//
//   {"trace_id": ..., "root_span_id": ..., "parent_span_id": ..., "child_span_id": ...,
//    "error": ID, "responses": [...]}
//
// Usage: node node_trace.js DSN SENTRY_TRACE BAGGAGE START_US [--static]
//
// Timestamps are explicit (START_US + fixed offsets). --static asks for a transaction event
// instead of streamed spans. Exits 1 if an envelope was not answered 2xx.
'use strict';

const Sentry = require('@sentry/node');
const { responses, recordingTransport } = require('./recording');

const args = process.argv.slice(2);
const staticMode = args.includes('--static');
const [dsn, sentryTrace, baggage, startArg] = args.filter((a) => !a.startsWith('--'));
if (!dsn || !sentryTrace || startArg === undefined) {
  console.error('usage: node node_trace.js DSN SENTRY_TRACE BAGGAGE START_US [--static]');
  process.exit(2);
}
const start = Number(startArg);


async function main() {
  const options = {
    dsn,
    transport: recordingTransport,
    tracesSampleRate: 1.0,
    release: 'shop-payments@3.1.0',
    environment: 'perf',
    sendClientReports: false,
  };
  if (staticMode) {
    options.traceLifecycle = 'static';
  }
  Sentry.init(options);

  const report = {};
  Sentry.continueTrace({ sentryTrace, baggage: baggage || undefined }, () => {
    const root = Sentry.startInactiveSpan({
      name: 'POST /api/pay',
      op: 'http.server',
      forceTransaction: true,
      startTime: (start + 20000) / 1e6,
    });
    Sentry.withActiveSpan(root, () => {
      const child = Sentry.startInactiveSpan({
        name: 'INSERT INTO payments',
        op: 'db.query',
        startTime: (start + 30000) / 1e6,
      });
      Sentry.withActiveSpan(child, () => {
        report.error = Sentry.captureException(new Error('card declined'));
      });
      child.end((start + 70000) / 1e6);
      report.child_span_id = child.spanContext().spanId;
    });
    root.setStatus({ code: 2, message: 'internal_error' });
    root.end((start + 80000) / 1e6);
    report.trace_id = root.spanContext().traceId;
    report.root_span_id = root.spanContext().spanId;
  });
  report.parent_span_id = sentryTrace.split('-')[1];

  await Sentry.flush(30000);
  await Sentry.close(30000);
  const all2xx = responses.length > 0 && responses.every((r) => r.status >= 200 && r.status < 300);
  console.log(JSON.stringify({ ...report, responses }));
  process.exit(all2xx && report.error ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
