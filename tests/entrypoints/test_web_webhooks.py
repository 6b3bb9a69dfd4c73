"""RunPod's ``webhook``: when a job ends, its final ``/status`` body is POSTed to the URL, with
retries, and only to addresses the policy allows. Real app, real receiving server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from shared.config import Settings
from shared.engines.base import Engine
from tests.entrypoints.web_helpers import Served, start_app, until_done
from tests.shared.http_receiver import receiver

WEBHOOK_LOGGER = "serverless_tts.web.webhooks"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def start(
    settings: Settings, piper_engine: Engine, sleeps: list[float]
) -> Iterator[Callable[..., Served]]:
    """Serve a worker with some settings changed; the webhook backoff is recorded, not slept."""
    with ExitStack() as stack:

        def started(**changes: Any) -> Served:
            changed = settings.model_copy(update=changes)
            return start_app(stack, changed, piper_engine, webhook_sleep=sleeps.append)

        yield started


def warnings_from_webhooks(caplog: pytest.LogCaptureFixture, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [r.getMessage() for r in caplog.records if r.name == WEBHOOK_LOGGER]
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError("no webhook warning was logged")


def test_the_final_status_is_posted_to_the_webhook_after_a_retry(
    start: Callable[..., Served], sleeps: list[float]
) -> None:
    served = start(webhook_allow_loopback=True)
    with receiver([500]) as hook:
        job = {"api_key": served.new_key(), "text": "Tell me when done."}
        url = f"http://127.0.0.1:{hook.port}/hooks/tts?token=t0k3n"
        queued = served.http.post("/run", json={"input": job, "webhook": url}).json()
        first, second = hook.wait_for(2)
    status = until_done(served.http, queued["id"])
    assert status["status"] == "COMPLETED" and status["output"][0]["url"]
    assert first.json() == second.json() == status
    assert second.method == "POST" and second.path == "/hooks/tts?token=t0k3n"
    assert second.headers["content-type"] == "application/json"
    assert sleeps == [1.0]


def test_a_failed_job_is_posted_with_its_error(start: Callable[..., Served]) -> None:
    served = start(webhook_allow_loopback=True)
    with receiver() as hook:
        job = {"api_key": served.new_key(), "text": "Hi.", "voice": "nobody"}
        url = f"http://127.0.0.1:{hook.port}/"
        queued = served.http.post("/run", json={"input": job, "webhook": url}).json()
        [got] = hook.wait_for(1)
    body = got.json()
    assert body == {"id": queued["id"], "status": "FAILED", "error": body["error"]}
    assert body["error"].startswith("voice_not_found: ")


def test_runsync_posts_its_reply_too(start: Callable[..., Served]) -> None:
    served = start(webhook_allow_loopback=True)
    with receiver() as hook:
        job = {"api_key": served.new_key(), "text": "Synchronous.", "delivery": "base64"}
        url = f"http://127.0.0.1:{hook.port}/"
        reply = served.http.post("/runsync", json={"input": job, "webhook": url}).json()
        [got] = hook.wait_for(1)
    assert reply["status"] == "COMPLETED" and got.json() == reply


def test_delivery_gives_up_after_the_attempts_with_a_warning_naming_no_secret(
    start: Callable[..., Served], sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    served = start(webhook_allow_loopback=True, webhook_attempts=3)
    key = served.new_key()
    with receiver([500, 502, 503]) as hook:
        url = f"http://127.0.0.1:{hook.port}/hook?token=t0k3n"
        job = {"input": {"api_key": key, "text": "Nobody listens."}, "webhook": url}
        queued = served.http.post("/run", json=job).json()
        [warning] = warnings_from_webhooks(caplog)
        assert len(hook.requests) == 3
    assert sleeps == [1.0, 2.0]
    assert queued["id"] in warning and "3 attempts" in warning and "HTTP 503" in warning
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert key not in logged and "t0k3n" not in logged


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/hook", "http://192.168.0.5:8080/", "http://[fd00::1]/"]
)
def test_development_mode_still_refuses_private_ranges(
    start: Callable[..., Served], sleeps: list[float], url: str
) -> None:
    served = start(webhook_allow_loopback=True)
    job = {"input": {"api_key": served.new_key(), "text": "Not to the office LAN."}, "webhook": url}
    refused = served.http.post("/run", json=job)
    assert refused.status_code == 422
    assert "not public (private)" in refused.json()["error"]
    assert sleeps == []


@pytest.mark.parametrize("route", ["/run", "/runsync"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_webhook_to_a_non_public_address_is_refused_at_submit_and_never_contacted(
    start: Callable[..., Served], sleeps: list[float], host: str, route: str
) -> None:
    served = start()  # webhook_allow_loopback stays off, as in production
    with receiver() as hook:
        url = f"http://{host}:{hook.port}/"
        job = {"input": {"api_key": served.new_key(), "text": "Keep it inside."}, "webhook": url}
        refused = served.http.post(route, json=job)
        assert refused.status_code == 422
        assert refused.json()["error"].startswith("invalid_input: ")
        assert "not public (loopback)" in refused.json()["error"]
        time.sleep(0.5)  # a delivery, had one been queued, would have arrived by now
        assert hook.requests == []
    assert sleeps == []


def test_a_keyless_job_never_makes_the_server_call_its_webhook(
    start: Callable[..., Served],
) -> None:
    served = start(webhook_allow_loopback=True)
    with receiver() as hook:
        url = f"http://127.0.0.1:{hook.port}/"
        for route in ("/run", "/runsync"):
            reply = served.http.post(route, json={"input": {"text": "Hi."}, "webhook": url})
            assert reply.status_code == 401
            assert reply.json() == {"error": "unauthorized: a valid api_key is required"}
        time.sleep(0.5)
        assert hook.requests == []
