"""Sends the events of issue 3's grouping and PII checks to a DSN with the real Python
sentry-sdk and prints their ids as one JSON object:

    {"divide": [ID x5], "other_divide": ID, "messages": [ID x3], "message_counts": [N x3],
     "custom": ID, "pii": ID, "responses": [{"status": 200, "items": ["event"]}, ...]}

- `divide`: the same ZeroDivisionError raised 5 times from one code path, by 2 users;
- `other_divide`: the same exception type raised from another function;
- `messages`: `capture_message` with a different number in each message;
- `custom`: an exception with `scope.fingerprint = ["my-custom-group"]`;
- `pii`: an event carrying a password, a credit-card number and an Authorization header.
  They are added in `before_send`, after the SDK's own scrubber ran, so they really leave the
  SDK and only the server can remove them.

Usage: python_grouping.py DSN. Exits 1 if any HTTP answer was not 2xx or an envelope went
unanswered.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES

PII_MARKER = "osprey-pii-event"


def before_send(event, hint):
    # Only the PII event gets the sensitive data, on top of what the SDK already built.
    if event.get("extra", {}).get("marker") == PII_MARKER:
        event["extra"]["password"] = "hunter2"
        event["extra"]["payment_note"] = "card 4111 1111 1111 1111 on file"
        event["request"] = {
            "url": "http://shop.example/checkout",
            "method": "POST",
            "headers": {"Authorization": "Bearer secret-token", "Accept": "text/html"},
        }
    return event


def divide(a, b):
    return a / b


def other_divide(a, b):
    return a / b


def capture(func):
    try:
        func(1, 0)
    except ZeroDivisionError:
        return sentry_sdk.capture_exception()
    raise AssertionError("no ZeroDivisionError")


def main():
    if len(sys.argv) < 2:
        print("usage: python_grouping.py DSN", file=sys.stderr)
        return 2
    sentry_sdk.init(
        dsn=sys.argv[1],
        transport=RecordingTransport,
        release="osprey-grouping@1.0.0",
        environment="test",
        before_send=before_send,
        auto_session_tracking=False,
        send_client_reports=False,
    )

    ids = {"divide": [], "messages": [], "message_counts": [3, 17, 256]}
    users = [{"id": "u-1", "email": "one@example.com"}, {"id": "u-2", "email": "two@example.com"}]
    for i in range(5):
        sentry_sdk.set_user(users[i % 2])
        ids["divide"].append(capture(divide))
    sentry_sdk.set_user(users[0])
    ids["other_divide"] = capture(other_divide)
    for n in ids["message_counts"]:
        ids["messages"].append(sentry_sdk.capture_message(f"Processed {n} items"))
    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["my-custom-group"]
        try:
            raise ValueError("custom grouped failure")
        except ValueError:
            ids["custom"] = sentry_sdk.capture_exception()
    with sentry_sdk.new_scope() as scope:
        scope.set_extra("marker", PII_MARKER)
        ids["pii"] = sentry_sdk.capture_message("checkout with sensitive data")

    sentry_sdk.flush(timeout=15)
    sentry_sdk.get_client().close(timeout=15)

    sent = len(ids["divide"]) + len(ids["messages"]) + 3
    all_ids = ids["divide"] + ids["messages"] + [ids["other_divide"], ids["custom"], ids["pii"]]
    ok = all(all_ids) and len(RESPONSES) >= sent
    ok = ok and all(200 <= r["status"] < 300 for r in RESPONSES)
    print(json.dumps({**ids, "responses": RESPONSES}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
