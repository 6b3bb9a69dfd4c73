"""The worker's error reports: Sentry's real client (events kept in memory by a ``Transport``
subclass) in front of this product's HTTP app with real Piper whose engine breaks; the event
names the tenant and carries no key, no text and no header."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import numpy as np
import pytest
import sentry_sdk

from shared.config import Settings
from shared.engines.base import Engine, Pcm, Voice
from shared.error_reports import DISPATCH_LOGGER, JOB_FAILURES, init_worker_error_reports
from shared.telemetry import JOB_LOGGER
from tests.engine_wrappers import WrappedEngine
from tests.entrypoints.web_helpers import Served, start_app
from tests.error_report_capture import DSN, Captured, captured

__all__ = ["captured"]

TEXT = "my card number is 4417 1234 5678 9113"


class Malformed(WrappedEngine):
    """Answers with "audio" no encoder can take: the worker's own code breaks on it, after the
    engine call (an engine that raises is a failover matter, not a bug)."""

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        return np.array([text], dtype=object)  # type: ignore[return-value]


def handlers() -> list[logging.Handler]:
    return [*logging.getLogger(DISPATCH_LOGGER).handlers, *logging.getLogger(JOB_LOGGER).handlers]


def test_without_a_dsn_nothing_is_started(captured: Captured) -> None:
    assert init_worker_error_reports({}) is False
    assert init_worker_error_reports({"SENTRY_DSN": ""}) is False
    assert not sentry_sdk.is_initialized()
    assert JOB_FAILURES not in handlers()


def served_broken(stack: ExitStack, settings: Settings, engine: Engine) -> tuple[Served, str]:
    served = start_app(stack, settings, Malformed(engine))
    issued = served.ctx.tenants.create_tenant("acme")
    return served, issued.api_key


def synthesize(served: Served, key: str) -> None:
    reply = served.http.post(
        "/v1/synthesize",
        json={"text": TEXT, "format": "wav"},
        headers={"Authorization": f"Bearer {key}", "Cookie": "session=abc"},
    )
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal"


def test_a_job_that_breaks_is_reported_with_its_tenant_and_nothing_of_its_words(
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    piper_engine: Engine,
) -> None:
    caplog.set_level(logging.INFO, logger=JOB_LOGGER)  # as configure_logging leaves it
    assert init_worker_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    with ExitStack() as stack:
        served, key = served_broken(stack, settings, piper_engine)
        tenant = served.ctx.tenants.authenticate(key)
        synthesize(served, key)
        events = captured.sent()
    assert len(events) == 1, events
    event = events[0]
    assert event["tags"]["tenant_id"] == tenant.id
    assert event["tags"]["error_code"] == "internal"
    assert event["tags"]["action"] == "synthesize"
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "ValueError"
    # numpy quoted the text into its message: the quotes' contents are gone, the rest stays.
    assert exception["value"] == "could not convert string to float: '[scrubbed]'"
    assert exception["stacktrace"]["frames"]  # where it broke still goes
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])
    sent = captured.text()
    for secret in [key, key.split("_")[1], TEXT, "4417", "Bearer", "session=abc"]:
        assert secret not in sent, secret
    assert "breadcrumbs" not in event or not event["breadcrumbs"].get("values")


def test_with_job_events_not_logged_the_error_still_goes_untagged(
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    piper_engine: Engine,
) -> None:
    caplog.set_level(logging.WARNING, logger=JOB_LOGGER)
    assert init_worker_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    with ExitStack() as stack:
        served, key = served_broken(stack, settings, piper_engine)
        synthesize(served, key)
        events = captured.sent()
    assert len(events) == 1
    assert "tenant_id" not in events[0].get("tags", {})
    assert TEXT not in captured.text() and key not in captured.text()


def test_starting_twice_adds_one_handler(captured: Captured) -> None:
    assert init_worker_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    assert init_worker_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    assert sentry_sdk.is_initialized()
    assert handlers().count(JOB_FAILURES) == 2  # once on each of the two loggers


def test_other_errors_go_as_they_are_logged_scrubbed(captured: Captured) -> None:
    assert init_worker_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    key = "stts_0123abcd_" + "x" * 43
    logging.getLogger("shared.storage").error("upload for %s failed: %r", key, TEXT)
    (event,) = captured.sent()
    assert event["logentry"] == {"message": "upload for %s failed: %r"}
    assert key not in captured.text() and TEXT not in captured.text()
