"""The edge's error reports: Sentry's real client (events kept in memory by a ``Transport``
subclass) while a real signed webhook reaches the edge in front of this product's HTTP app,
its worker client broken by a bug; the event names the business and carries no key, no
signature, no number and no words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import sentry_sdk

from edge.app import create_edge_app
from edge.asgi import edge_app
from edge.error_reports import init_error_reports
from edge.workers.base import Speech, WorkerClient
from edge.workers.http_api import HttpWorker
from shared.engines.base import Engine
from tests.edge import edge_helpers as helpers
from tests.edge.edge_helpers import GUARD_S, Edge
from tests.entrypoints.web_helpers import serve
from tests.error_report_capture import DSN, Captured, captured
from tests.servers import free_port

__all__ = ["captured"]

GREETING = "Hello from the error reports test."


class BrokenLookups:
    """The real ``HttpWorker`` with a bug in its cache lookup: it raises what is not a
    ``WorkerError``, naming the words and the key."""

    def __init__(self, worker: WorkerClient) -> None:
        self._worker = worker

    async def cached_url(self, speech: Speech) -> str | None:
        key = speech.api_key.get_secret_value()
        raise RuntimeError(f"lookup broke for {speech.text!r} with {key}")

    async def warm(self, speech: Speech) -> None:
        await self._worker.warm(speech)

    async def synthesize_url(self, speech: Speech) -> str:
        return await self._worker.synthesize_url(speech)

    def stream(self, speech: Speech) -> AsyncIterator[bytes]:
        return self._worker.stream(speech)

    async def aclose(self) -> None:
        await self._worker.aclose()


def test_without_a_dsn_nothing_is_started(captured: Captured) -> None:
    assert init_error_reports({}) is False
    settings = helpers.edge_settings(
        "http://127.0.0.1:9", "k", {"acme": helpers.business("http://x/")}
    )
    edge_app(settings)
    assert not sentry_sdk.is_initialized()


def test_the_edge_app_starts_reports_with_a_dsn(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    settings = helpers.edge_settings(
        "http://127.0.0.1:9", "k", {"acme": helpers.business("http://x/")}
    )
    edge_app(settings)
    assert sentry_sdk.is_initialized()


def test_a_bug_on_a_call_is_reported_with_its_business_and_nothing_of_the_call(
    captured: Captured, tmp_path: Path, piper_engine: Engine
) -> None:
    assert init_error_reports({"SENTRY_DSN": DSN}, transport=captured)
    with ExitStack() as stack:
        product = helpers.start_product(stack, tmp_path, piper_engine)
        responder = stack.enter_context(helpers.responder_server())
        key = product.new_key()
        url = str(product.http.base_url)
        settings = helpers.edge_settings(
            url, key, {"acme": helpers.business(responder.url("text"), greeting=GREETING)}
        )
        worker = BrokenLookups(HttpWorker(url, timeout_s=GUARD_S, retries=0))
        app = create_edge_app(settings, worker)
        port = free_port()
        base = stack.enter_context(serve(app, port))  # type: ignore[arg-type]
        http = stack.enter_context(httpx.Client(base_url=base, timeout=GUARD_S))
        root = Edge(app, base, http).twiml("acme", "voice", helpers.call_params())
        assert root.findtext("Gather/Say") == GREETING  # the caller still hears the greeting
        events = captured.sent()
    assert len(events) == 1, events
    event = events[0]
    assert event["tags"]["business"] == "acme"
    assert event["logger"] == "edge.deadline"
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "lookup broke for '[scrubbed]' with [scrubbed]"
    sent = captured.text()
    params = helpers.call_params()
    secrets = [
        key,
        helpers.AUTH_TOKEN,
        helpers.signature(f"{helpers.PUBLIC}/twilio/acme/voice", params),
    ]
    for secret in [*secrets, GREETING, params["From"], params["To"], params["CallSid"]]:
        assert secret not in sent, secret
