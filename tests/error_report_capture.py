"""Sentry's real client with its events kept in memory: a ``Transport`` subclass (the SDK's own
extension point) stands in for Sentry's servers, which cannot run here."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from shared.error_reports import DISPATCH_LOGGER, JOB_FAILURES
from shared.telemetry import JOB_LOGGER

DSN = "https://public@sentry.example.com/1"


class Captured(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)

    def sent(self) -> list[dict[str, Any]]:
        """Every event so far, once the client has handed them over."""
        sentry_sdk.flush()
        return self.events

    def text(self) -> str:
        return json.dumps(self.sent())


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """A transport for the test; afterwards, no client and no handler left behind."""
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    transport = Captured()
    yield transport
    sentry_sdk.flush()
    sentry_sdk.get_global_scope().set_client(None)
    for name in (DISPATCH_LOGGER, JOB_LOGGER):
        logging.getLogger(name).removeHandler(JOB_FAILURES)
