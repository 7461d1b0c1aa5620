"""Sends transactions with known durations, statuses and users to a DSN with the real Python
sentry-sdk, and prints what happened as one JSON object:

    {"event_ids": [ID, ...], "responses": [{"status": 200, "items": ["transaction"]}, ...]}

Usage: python_perf.py DSN PLAN.json

PLAN.json (written by tests/sdk_perf.rs) is
    {"transactions": [{"name": ..., "op": ..., "start_us": ..., "duration_us": ...,
                       "status": "ok" | "internal_error" | ..., "user": ...}, ...]}
with absolute start times in unix microseconds. Start and end are handed to the SDK as
explicit timestamps (`start_timestamp=` / `finish(end_timestamp=)`), so the durations the
server sees are exactly the planned ones without sleeping. Exits 1 if any envelope was not
answered 2xx or a transaction got no event id.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES, at


def main():
    if len(sys.argv) != 3:
        print("usage: python_perf.py DSN PLAN.json", file=sys.stderr)
        return 2
    dsn, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)

    sentry_sdk.init(
        dsn=dsn,
        transport=RecordingTransport,
        traces_sample_rate=1.0,
        release="osprey-perf@1.0.0",
        environment="perf",
        auto_session_tracking=False,
        send_client_reports=False,
    )
    ids = []
    for t in plan["transactions"]:
        sentry_sdk.set_user({"id": t["user"]})
        transaction = sentry_sdk.start_transaction(
            op=t["op"], name=t["name"], source="route", start_timestamp=at(t["start_us"])
        )
        transaction.set_status(t["status"])
        ids.append(transaction.finish(end_timestamp=at(t["start_us"] + t["duration_us"])))

    sentry_sdk.flush(timeout=30)
    sentry_sdk.get_client().close(timeout=30)

    answered = sum(1 for r in RESPONSES if "transaction" in r["items"])
    ok = (
        all(200 <= r["status"] < 300 for r in RESPONSES)
        and all(ids)
        and answered == len(ids)
    )
    print(json.dumps({"event_ids": ids, "responses": RESPONSES}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
