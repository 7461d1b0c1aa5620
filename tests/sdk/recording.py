"""What the Python SDK scripts in this folder share: the SDK's own HTTP transport, recording
every answer osprey gives, and exact timestamps.

The scripts hand `RecordingTransport` to `sentry_sdk.init(transport=...)`; the SDK still
sends through its default transport (so the wire format is the real SDK's), and each answer
is noted in `RESPONSES` as {"status", "items", "rate_limits", "retry_after"} for the script to
print and the Rust test to check.
"""

import threading
from datetime import datetime, timedelta, timezone

from sentry_sdk.transport import HttpTransport

RESPONSES = []
TRANSPORTS = []
_LOCK = threading.Lock()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class RecordingTransport(HttpTransport):
    """The SDK's default HTTP transport, noting each answer and its rate-limit headers."""

    def __init__(self, options):
        super().__init__(options)
        TRANSPORTS.append(self)

    def _handle_response(self, response, envelope):
        items = [item.type for item in envelope.items] if envelope is not None else []
        headers = response.headers
        with _LOCK:
            RESPONSES.append(
                {
                    "status": response.status,
                    "items": items,
                    "rate_limits": headers.get("x-sentry-rate-limits"),
                    "retry_after": headers.get("retry-after"),
                }
            )
        super()._handle_response(response, envelope)


def responses():
    """A copy of the answers so far."""
    with _LOCK:
        return list(RESPONSES)


def all_2xx():
    """True when at least one envelope was sent and every answer was 2xx."""
    answers = responses()
    return bool(answers) and all(200 <= r["status"] < 300 for r in answers)


def at(us):
    """Integer unix microseconds to an aware datetime, without float rounding."""
    return _EPOCH + timedelta(microseconds=int(us))
