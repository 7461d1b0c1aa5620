"""Sends one error, one message and one transaction with spans to a DSN with the real Python
sentry-sdk, the way an application would, and prints what happened as one JSON object:

    {"error": ID, "message": ID, "transaction": ID,
     "responses": [{"status": 200, "items": ["event"]}, ...]}

Usage: python_send.py DSN   (or the DSN in $SENTRY_DSN)

Every HTTP answer the SDK's own transport receives is recorded; the script exits 1 if any
answer was not 2xx or if fewer envelopes were answered than were sent, so a caller learns of
a rejected envelope even though the SDK itself only logs it.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES


def fail_in_checkout(cart):
    # A real exception with a real traceback (several frames, local variables).
    total = sum(cart.values())
    return total / (len(cart) - len(cart))


def main():
    dsn = sys.argv[1] if len(sys.argv) > 1 else None
    if not dsn:
        import os

        dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        print("usage: python_send.py DSN (or set SENTRY_DSN)", file=sys.stderr)
        return 2

    sentry_sdk.init(
        dsn=dsn,
        transport=RecordingTransport,
        traces_sample_rate=1.0,
        release="osprey-test@1.0.0",
        environment="test",
        # Sessions and client reports are separate envelopes the test does not count on.
        auto_session_tracking=False,
        send_client_reports=False,
        default_integrations=True,
    )
    sentry_sdk.set_user({"id": "u-42", "email": "user@example.com"})
    sentry_sdk.set_tag("sdk_test", "python")

    ids = {}
    try:
        fail_in_checkout({"apple": 3, "pear": 4})
    except ZeroDivisionError:
        ids["error"] = sentry_sdk.capture_exception()

    ids["message"] = sentry_sdk.capture_message("osprey python message", level="warning")

    transaction = sentry_sdk.start_transaction(op="http.server", name="GET /checkout")
    with transaction.start_child(op="db.query", name="SELECT * FROM carts"):
        pass
    with transaction.start_child(op="http.client", name="GET /prices") as span:
        with span.start_child(op="serialize", name="json"):
            pass
    # finish() sends the transaction and returns its event id.
    ids["transaction"] = transaction.finish()

    sentry_sdk.flush(timeout=15)
    client = sentry_sdk.get_client()
    client.close(timeout=15)

    ok = bool(RESPONSES) and all(200 <= r["status"] < 300 for r in RESPONSES)
    sent = sum(1 for v in ids.values() if v)
    ok = ok and len(RESPONSES) >= sent and all(ids.values())
    print(json.dumps({**ids, "responses": RESPONSES}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
