"""Captures an exception with the real Python sentry-sdk, then sends user feedback about it
through the SDK's own envelope and transport: a legacy `user_report` item (what crash-report
dialogs send: {event_id, name, email, comments}) and a new-style `feedback` item (an event of
type "feedback" whose contexts.feedback names the error as associated_event_id). sentry-python
has no feedback API of its own (2.x), so the script builds the items with the SDK's
`Envelope`/`Item` classes as an integration would. Prints
{"event": ID, "feedback": ID, "status": [HTTP statuses]}.

Usage: python_feedback.py DSN
"""

import json
import sys
import time
import uuid

import sentry_sdk
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from recording import RecordingTransport, RESPONSES, all_2xx


def main():
    if len(sys.argv) != 2:
        print("usage: python_feedback.py DSN", file=sys.stderr)
        return 2
    sentry_sdk.init(
        dsn=sys.argv[1],
        transport=RecordingTransport,
        auto_session_tracking=False,
        send_client_reports=False,
        environment="production",
        release="shop@1.0",
    )
    try:
        {}["cart"]
    except KeyError:
        event_id = sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=10)

    transport = sentry_sdk.get_client().transport
    report = {
        "event_id": event_id,
        "name": "Ann Example",
        "email": "ann@example.com",
        "comments": "The cart emptied itself when I paid.\n",
    }
    transport.capture_envelope(
        Envelope(
            headers={"event_id": event_id},
            items=[Item(payload=PayloadRef(json=report), type="user_report")],
        )
    )
    feedback_id = uuid.uuid4().hex
    feedback = {
        "event_id": feedback_id,
        "type": "feedback",
        "level": "info",
        "platform": "python",
        "timestamp": time.time(),
        "environment": "production",
        "contexts": {
            "feedback": {
                "message": "Checkout button does nothing",
                "contact_email": "bo@example.com",
                "name": "Bo",
                "url": "https://shop.example.com/checkout",
                "associated_event_id": event_id,
                "source": "api",
            }
        },
    }
    transport.capture_envelope(
        Envelope(
            headers={"event_id": feedback_id},
            items=[Item(payload=PayloadRef(json=feedback), type="feedback")],
        )
    )
    sentry_sdk.flush(timeout=10)
    sentry_sdk.get_client().close(timeout=10)
    print(
        json.dumps(
            {
                "event": event_id,
                "feedback": feedback_id,
                "status": [r["status"] for r in RESPONSES],
                "items": [r["items"] for r in RESPONSES],
            }
        )
    )
    return 0 if all_2xx() and len(RESPONSES) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
