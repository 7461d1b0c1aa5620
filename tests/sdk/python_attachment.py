"""Captures an exception with two attachments through the real Python sentry-sdk (a text log
and a binary blob, added to the scope as an application would) and prints
{"event": ID, "status": [HTTP statuses]}.

Usage: python_attachment.py DSN
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, RESPONSES, all_2xx


def main():
    if len(sys.argv) != 2:
        print("usage: python_attachment.py DSN", file=sys.stderr)
        return 2
    sentry_sdk.init(
        dsn=sys.argv[1],
        transport=RecordingTransport,
        auto_session_tracking=False,
        send_client_reports=False,
    )
    scope = sentry_sdk.get_current_scope()
    scope.add_attachment(
        bytes=b"12:00:01 starting\n12:00:02 loading cart\n12:00:03 boom\n",
        filename="app.log",
        content_type="text/plain",
    )
    scope.add_attachment(bytes=bytes(range(256)) * 4, filename="state.bin")
    try:
        {}["missing"]
    except KeyError:
        event_id = sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=10)
    sentry_sdk.get_client().close(timeout=10)
    print(json.dumps({"event": event_id, "status": [r["status"] for r in RESPONSES]}))
    return 0 if all_2xx() else 1


if __name__ == "__main__":
    sys.exit(main())
