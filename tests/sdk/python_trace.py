"""The first service of a distributed trace, with the real Python sentry-sdk: a transaction
`GET /shop` with a `db.query` span and an `http.client` span, whose outgoing trace headers
(`sentry-trace`, `baggage`) a second service continues (tests/sdk/node_trace.js). Prints:

    {"trace_id": ..., "transaction_span_id": ..., "db_span_id": ..., "client_span_id": ...,
     "event_id": ..., "sentry_trace": ..., "baggage": ..., "responses": [...]}

Usage: python_trace.py DSN START_US

Every timestamp is explicit (START_US, unix microseconds, plus fixed offsets), so the tree's
timings are known to the test. Exits 1 if the envelope was not answered 2xx.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES, at


def main():
    if len(sys.argv) != 3:
        print("usage: python_trace.py DSN START_US", file=sys.stderr)
        return 2
    dsn, start = sys.argv[1], int(sys.argv[2])
    sentry_sdk.init(
        dsn=dsn,
        transport=RecordingTransport,
        traces_sample_rate=1.0,
        release="shop-frontend@2.0.0",
        environment="perf",
        auto_session_tracking=False,
        send_client_reports=False,
    )
    transaction = sentry_sdk.start_transaction(
        op="http.server", name="GET /shop", source="route", start_timestamp=at(start)
    )
    db = transaction.start_child(
        op="db.query", name="SELECT * FROM carts", start_timestamp=at(start + 1_000)
    )
    db.finish(end_timestamp=at(start + 9_000))
    client = transaction.start_child(
        op="http.client", name="POST /api/pay", start_timestamp=at(start + 10_000)
    )
    # What an instrumented HTTP client would put on the outgoing request.
    headers = dict(client.iter_headers())
    client.set_status("ok")
    client.finish(end_timestamp=at(start + 90_000))
    transaction.set_status("ok")
    event_id = transaction.finish(end_timestamp=at(start + 100_000))

    sentry_sdk.flush(timeout=30)
    sentry_sdk.get_client().close(timeout=30)
    report = {
        "trace_id": transaction.trace_id,
        "transaction_span_id": transaction.span_id,
        "db_span_id": db.span_id,
        "client_span_id": client.span_id,
        "event_id": event_id,
        "sentry_trace": headers.get("sentry-trace"),
        "baggage": headers.get("baggage"),
        "responses": RESPONSES,
    }
    ok = (
        bool(RESPONSES)
        and all(200 <= r["status"] < 300 for r in RESPONSES)
        and event_id
        and report["sentry_trace"]
    )
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
