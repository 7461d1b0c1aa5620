// Sends transactions with known durations, statuses and users to a DSN with the real
// @sentry/node SDK and prints what happened as one JSON object:
//
//   {"segments": [SPAN_ID, ...], "responses": [{"status": 200, "items": ["span"]}, ...]}
//
// Usage: node node_perf.js DSN PLAN.json [--static]
//
// PLAN.json is the same as python_perf.py's. Each planned transaction is a root span in a
// trace of its own, started and ended at explicit times (`startTime`, `span.end(time)`), so
// the durations are exact without sleeping. Without --static the SDK keeps its default
// (`traceLifecycle: 'stream'`: span v2 items, no transaction event); --static asks for the
// classic transaction events. Exits 1 if an envelope was not answered 2xx.
'use strict';

const fs = require('fs');
const Sentry = require('@sentry/node');
const { responses, recordingTransport } = require('./recording');

const args = process.argv.slice(2);
const staticMode = args.includes('--static');
const [dsn, planPath] = args.filter((a) => !a.startsWith('--'));
if (!dsn || !planPath) {
  console.error('usage: node node_perf.js DSN PLAN.json [--static]');
  process.exit(2);
}
const plan = JSON.parse(fs.readFileSync(planPath, 'utf8'));


async function main() {
  const options = {
    dsn,
    transport: recordingTransport,
    tracesSampleRate: 1.0,
    release: 'osprey-perf@1.0.0',
    environment: 'perf',
    sendClientReports: false,
  };
  if (staticMode) {
    options.traceLifecycle = 'static';
  }
  Sentry.init(options);

  const segments = [];
  for (const t of plan.transactions) {
    // One isolation scope per transaction, as each request of a server gets: the static
    // lifecycle applies the scope's user when the event is processed, after this loop.
    Sentry.withIsolationScope(() => {
      Sentry.setUser({ id: t.user });
      Sentry.startNewTrace(() => {
        const span = Sentry.startInactiveSpan({
          name: t.name,
          op: t.op,
          forceTransaction: true,
          startTime: t.start_us / 1e6,
        });
        span.setStatus(t.status === 'ok' ? { code: 1 } : { code: 2, message: t.status });
        span.end((t.start_us + t.duration_us) / 1e6);
        segments.push(span.spanContext().spanId);
      });
    });
  }

  await Sentry.flush(30000);
  await Sentry.close(30000);
  const all2xx = responses.length > 0 && responses.every((r) => r.status >= 200 && r.status < 300);
  console.log(JSON.stringify({ segments, responses }));
  process.exit(all2xx ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
