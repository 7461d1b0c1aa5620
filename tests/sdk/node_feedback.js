// Captures an error with the real @sentry/node SDK, then user feedback about it with the
// SDK's own `Sentry.captureFeedback({message, name, email, url, associatedEventId})` (a
// `feedback` envelope item), and prints {"error": ID, "feedback": ID, "responses": [...]}.
//
// Usage: node node_feedback.js DSN   (@sentry/node is found through NODE_PATH)
'use strict';

const Sentry = require('@sentry/node');
const { responses, recordingTransport, all2xx } = require('./recording');

const dsn = process.argv[2] || process.env.SENTRY_DSN;
if (!dsn) {
  console.error('usage: node node_feedback.js DSN');
  process.exit(2);
}

async function main() {
  Sentry.init({
    dsn,
    transport: recordingTransport,
    sendClientReports: false,
    environment: 'test',
    release: 'shop@2.0.0',
  });
  let error;
  try {
    JSON.parse('{"payment": ');
  } catch (err) {
    error = Sentry.captureException(err);
  }
  await Sentry.flush(15000);
  const feedback = Sentry.captureFeedback({
    message: 'Payment keeps failing',
    name: 'Cy',
    email: 'cy@example.com',
    url: 'https://shop.example.com/pay',
    associatedEventId: error,
  });
  await Sentry.flush(15000);
  await Sentry.close(15000);
  const ok = typeof error === 'string' && typeof feedback === 'string' && all2xx()
    && responses.some((r) => r.items.includes('feedback'));
  console.log(JSON.stringify({ error, feedback, responses }));
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
