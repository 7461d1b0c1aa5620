"""Release health with the real Python sentry-sdk: sessions as the SDK tracks them, and prints
{"items": [...item types sent...], "responses": [...]}.

Usage: python_sessions.py DSN RELEASE OTHER_RELEASE

Under RELEASE (environment "production"):
- three application-mode sessions (one `session` item each, with the user as `did`): a
  healthy one, one with a handled exception (errored), and one with an unhandled exception
  (crashed: the event's mechanism says handled=false, as the SDK's excepthook reports it);
- two request-mode sessions (what the SDK's web framework integrations track per request,
  sent as one pre-aggregated `sessions` item without users): one fine, one with a handled
  exception.
Under OTHER_RELEASE: one healthy application session.
Exits 1 if an envelope was not answered 2xx.
"""

import json
import sys

import sentry_sdk
from recording import RecordingTransport, all_2xx, responses
from sentry_sdk.utils import event_from_exception


def session(user, body, mode="application"):
    """Runs `body` inside one session of the isolation scope (the SDK's own session API)."""
    scope = sentry_sdk.get_isolation_scope()
    if user is not None:
        sentry_sdk.set_user({"id": user})
    scope.start_session(session_mode=mode)
    body()
    scope.end_session()


def nothing():
    pass


def handled_error():
    try:
        raise ValueError("a handled error")
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)


def crash():
    try:
        raise RuntimeError("an unhandled error")
    except RuntimeError:
        event, hint = event_from_exception(
            sys.exc_info(),
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": "excepthook", "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)


def init(dsn, release):
    sentry_sdk.init(
        dsn=dsn,
        transport=RecordingTransport,
        release=release,
        environment="production",
        auto_session_tracking=True,
        send_client_reports=False,
    )


def main():
    if len(sys.argv) != 4:
        print("usage: python_sessions.py DSN RELEASE OTHER_RELEASE", file=sys.stderr)
        return 2
    dsn, release, other = sys.argv[1], sys.argv[2], sys.argv[3]

    init(dsn, release)
    session("user-healthy", nothing)
    session("user-errored", handled_error)
    session("user-crashed", crash)
    sentry_sdk.set_user(None)
    session(None, nothing, mode="request")
    session(None, handled_error, mode="request")
    sentry_sdk.flush(timeout=30)
    sentry_sdk.get_client().close(timeout=30)

    init(dsn, other)
    session("user-other", nothing)
    sentry_sdk.flush(timeout=30)
    sentry_sdk.get_client().close(timeout=30)

    answers = responses()
    items = [item for r in answers for item in r["items"]]
    print(json.dumps({"items": items, "responses": answers}))
    return 0 if all_2xx() else 1


if __name__ == "__main__":
    sys.exit(main())
