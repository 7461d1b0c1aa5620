"""Sends errors and transactions under several releases with the real Python sentry-sdk, one
release after the other (the SDK is initialised once per release, as a deploy would), and
prints {"event_ids": [...], "responses": [...]}.

Usage: python_releases.py DSN PLAN.json

PLAN.json (written by tests/releases.rs):
    {"releases": [{"version": ..., "errors": [{"type": "ValueError", "user": ...}, ...],
                   "transactions": [{"name": ..., "start_us": ..., "duration_us": ...,
                                     "status": ..., "user": ...}, ...]}, ...]}
Errors are real exceptions raised from one function, so their type alone tells their issues
apart. Exits 1 if an envelope was not answered 2xx or an event got no id.
"""

import builtins
import json
import sys

import sentry_sdk
from recording import RecordingTransport, all_2xx, at, responses


def fail(kind):
    raise getattr(builtins, kind)("release check failed")


def main():
    if len(sys.argv) != 3:
        print("usage: python_releases.py DSN PLAN.json", file=sys.stderr)
        return 2
    dsn, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)

    ids = []
    for release in plan["releases"]:
        sentry_sdk.init(
            dsn=dsn,
            transport=RecordingTransport,
            traces_sample_rate=1.0,
            release=release["version"],
            environment="production",
            auto_session_tracking=False,
            send_client_reports=False,
        )
        for error in release["errors"]:
            sentry_sdk.set_user({"id": error["user"]})
            try:
                fail(error["type"])
            except Exception as exc:  # noqa: BLE001 - every planned type is caught here
                ids.append(sentry_sdk.capture_exception(exc))
        for t in release["transactions"]:
            sentry_sdk.set_user({"id": t["user"]})
            transaction = sentry_sdk.start_transaction(
                op="http.server", name=t["name"], source="route", start_timestamp=at(t["start_us"])
            )
            transaction.set_status(t["status"])
            ids.append(transaction.finish(end_timestamp=at(t["start_us"] + t["duration_us"])))
        # Everything of this release is answered before the next release starts, so the
        # server sees the releases in plan order.
        sentry_sdk.flush(timeout=30)
        sentry_sdk.get_client().close(timeout=30)

    ok = all_2xx() and all(ids)
    print(json.dumps({"event_ids": ids, "responses": responses()}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
