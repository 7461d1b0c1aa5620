// Release health with the real @sentry/node: an HTTP server the SDK instruments tracks each
// request as a request-mode session and sends them as one pre-aggregated `sessions` item when
// the SDK flushes. Four requests: two fine, one capturing a handled error (errored), one
// capturing an unhandled one (crashed). Prints {"items": [...], "responses": [...]}.
//
// Usage: node node_sessions.js DSN RELEASE   (@sentry/node is found through NODE_PATH).
// Exits 1 if an answer was not 2xx or no `sessions` item was sent.
'use strict';

const Sentry = require('@sentry/node');
const { responses, recordingTransport, all2xx } = require('./recording');

const [dsn, release] = process.argv.slice(2);
if (!dsn || !release) {
  console.error('usage: node node_sessions.js DSN RELEASE');
  process.exit(2);
}

Sentry.init({
  dsn,
  transport: recordingTransport,
  release,
  environment: 'production',
  sendClientReports: false,
});
// Required after init, as an application does, so that the SDK instruments the server.
const http = require('http');

function get(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject);
  });
}

async function main() {
  const server = http.createServer((req, res) => {
    if (req.url === '/error') {
      try {
        throw new Error('handled in a request');
      } catch (err) {
        Sentry.captureException(err);
      }
    } else if (req.url === '/crash') {
      Sentry.captureException(new Error('unhandled in a request'), {
        mechanism: { type: 'node_sessions', handled: false },
      });
    }
    res.end('ok');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  for (const path of ['/ok', '/ok', '/error', '/crash']) {
    await get(port, path);
  }
  await new Promise((resolve) => server.close(resolve));
  await Sentry.flush(15000);
  await Sentry.close(15000);
  const items = responses.flatMap((r) => r.items);
  console.log(JSON.stringify({ items, responses }));
  process.exit(all2xx() && items.includes('sessions') ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
