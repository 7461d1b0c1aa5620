"""Sends errors one envelope at a time with the real Python sentry-sdk to a DSN whose project has
an error quota, then a transaction, and prints what the SDK's transport saw as one JSON object:

    {"errors_captured": N,
     "responses": [{"status": 200, "items": ["event"], "rate_limits": HEADER|null,
                    "retry_after": HEADER|null}, ...],
     "disabled_after": {"error": bool, "transaction": bool},
     "transaction": ID}

Usage: python_rate_limited.py DSN ERRORS

Each error is flushed before the next is captured, so each is its own HTTP request: the
caller can tell exactly which requests the SDK made after it was told to back off. The SDK
itself decides whether to send (it keeps Relay's `X-Sentry-Rate-Limits` per category); this
script never filters anything.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES, TRANSPORTS


def main():
    if len(sys.argv) != 3:
        print("usage: python_rate_limited.py DSN ERRORS", file=sys.stderr)
        return 2
    dsn, errors = sys.argv[1], int(sys.argv[2])

    sentry_sdk.init(
        dsn=dsn,
        transport=RecordingTransport,
        traces_sample_rate=1.0,
        release="osprey-test@1.0.0",
        # Sessions and client reports would be extra envelopes the caller does not count on.
        auto_session_tracking=False,
        send_client_reports=False,
    )

    for i in range(errors):
        try:
            raise ValueError(f"quota test error {i}")
        except ValueError:
            sentry_sdk.capture_exception()
        sentry_sdk.flush(timeout=10)

    transport = TRANSPORTS[0] if TRANSPORTS else None
    disabled = {
        "error": bool(transport and transport._check_disabled("error")),
        "transaction": bool(transport and transport._check_disabled("transaction")),
    }

    transaction = sentry_sdk.start_transaction(op="task", name="after the error quota")
    with transaction.start_child(op="db.query", name="SELECT 1"):
        pass
    transaction_id = transaction.finish()

    sentry_sdk.flush(timeout=10)
    sentry_sdk.get_client().close(timeout=10)

    print(
        json.dumps(
            {
                "errors_captured": errors,
                "responses": RESPONSES,
                "disabled_after": disabled,
                "transaction": transaction_id,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
