"""Optional error reports to Sentry, on when ``SENTRY_DSN`` is set (nothing is started without
it), scrubbed before they leave the process. The worker starts the same client through
``shared.error_reports`` (the edge can import nothing of the worker; this module holds the part
both need).

What goes: an error logged at ERROR (or raised out of a thread) with its stack, code lines and
tags. What never goes: request bodies, headers, cookies and query strings; stack frames'
local variables (a job's text and key live there); breadcrumbs (other calls' log lines); a key
(``stts_...``), a phone number or a quoted value (how words reach an exception's message:
``input_value='...'``, ``f"{text!r}"``) anywhere in what is left; a log line's arguments. Tags
come from ``tagged`` around the work they name (the edge: its business).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.transport import Transport
from sentry_sdk.types import Event, Hint

DSN_ENV = "SENTRY_DSN"
SCRUBBED = "[scrubbed]"
# A tenant key (``stts_<prefix>_<secret>``, any part of it) and an E.164 phone number.
_SECRETS = re.compile(r"stts_[A-Za-z0-9_-]+|\+\d{7,15}")
# A quoted run, as repr() and pydantic write a value into a message.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# Fields that carry words or credentials wherever they turn up (extra data, contexts): dropped.
_SECRET_FIELDS = {
    "api_key",
    "authorization",
    "cookie",
    "cookies",
    "data",
    "headers",
    "phrases",
    "query_string",
    "speech",
    "speechresult",
    "ssml",
    "text",
    "vars",
    "x-twilio-signature",
}


def init_error_reports(
    environ: Mapping[str, str] | None = None,
    *,
    transport: Transport | None = None,
    ignore: Sequence[str] = (),
) -> bool:
    """Start the Sentry client once per process if ``SENTRY_DSN`` is set; whether reports are
    on. ``ignore``: loggers whose errors are reported another way (not as they are logged)."""
    dsn = (os.environ if environ is None else environ).get(DSN_ENV, "")
    if not dsn:
        return False
    for name in ignore:
        ignore_logger(name)
    if sentry_sdk.is_initialized():
        return True
    sentry_sdk.init(
        dsn=dsn,
        transport=transport,
        before_send=scrub,
        send_default_pii=False,
        include_local_variables=False,
        max_breadcrumbs=0,
        max_request_body_size="never",
        # Framework integrations would capture requests; errors reach Sentry through logging.
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        # No sentry-trace or baggage headers on calls to workers, vendors or responders.
        trace_propagation_targets=[],
    )
    return True


@contextmanager
def tagged(**tags: str | None) -> Iterator[None]:
    """Errors reported inside carry ``tags`` (a scope of their own: one call's tags never
    reach another's). Cheap with reports off."""
    with sentry_sdk.new_scope() as scope:
        for name, value in tags.items():
            if value is not None:
                scope.set_tag(name, value)
        yield


def scrub(event: Event, _hint: Hint) -> Event:
    """What may leave, of an event about to be sent."""
    request = event.get("request")
    if request:
        event["request"] = {"method": request.get("method"), "url": _no_query(request.get("url"))}
    event.pop("breadcrumbs", None)
    logentry = event.get("logentry")
    if logentry:  # the format string is code; its arguments may be anything
        event["logentry"] = {"message": _words_out(str(logentry.get("message", "")))}
    for exception in (event.get("exception") or {}).get("values", []):
        if isinstance(exception.get("value"), str):
            exception["value"] = _words_out(exception["value"])
    return _clean(event)  # type: ignore[no-any-return]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRETS.sub(SCRUBBED, value)
    if isinstance(value, dict):
        return {
            key: _clean(item)
            for key, item in value.items()
            if str(key).lower() not in _SECRET_FIELDS
        }
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def _words_out(message: str) -> str:
    return _QUOTED.sub(f"'{SCRUBBED}'", message)


def _no_query(url: object) -> str | None:
    return url.split("?", 1)[0] if isinstance(url, str) else None
