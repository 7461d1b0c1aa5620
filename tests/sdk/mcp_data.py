"""Sends the data set of the MCP acceptance test with the real Python sentry-sdk and prints
one JSON object with the ids it sent: {"errors": [...], "transactions": [...], "trace": ID}.

Usage: mcp_data.py DSN RELEASE ERRORS TRANSACTIONS DURATION_MS

Sends ERRORS ZeroDivisionErrors (two users) and TRANSACTIONS `GET /checkout` transactions
lasting DURATION_MS·i/TRANSACTIONS ms for i = 1..TRANSACTIONS (every 10th with status
internal_error), all tagged with RELEASE, environment "production".
"""

import json
import sys
from datetime import datetime, timedelta, timezone

import sentry_sdk


def divide(cart):
    return sum(cart.values()) / (len(cart) - len(cart))


def main():
    dsn, release = sys.argv[1], sys.argv[2]
    errors, transactions, duration_ms = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    sentry_sdk.init(
        dsn=dsn,
        release=release,
        environment="production",
        traces_sample_rate=1.0,
        auto_session_tracking=False,
        send_client_reports=False,
    )
    out = {"errors": [], "transactions": []}
    for i in range(errors):
        sentry_sdk.set_user({"id": f"user-{i % 2}"})
        try:
            divide({"apple": 1})
        except ZeroDivisionError:
            out["errors"].append(sentry_sdk.capture_exception())
    end = datetime.now(timezone.utc) - timedelta(minutes=1)
    for i in range(1, transactions + 1):
        ms = duration_ms * i / transactions
        tx = sentry_sdk.start_transaction(
            op="http.server", name="GET /checkout", start_timestamp=end - timedelta(milliseconds=ms)
        )
        if i % 10 == 0:
            tx.set_status("internal_error")
        else:
            tx.set_status("ok")
        with sentry_sdk.start_span(op="db.query", name="SELECT cart"):
            pass
        if i == 1:
            out["trace"] = tx.trace_id
        out["transactions"].append(tx.finish(end_timestamp=end))
    sentry_sdk.flush(timeout=30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
