"""What the web app refuses before any job runs: oversized bodies, keyless queued jobs, and jobs
beyond the queue's bound. Real uvicorn on loopback, real HTTP clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from shared.engines.base import Engine
from tests.engine_wrappers import GatedEngine
from tests.entrypoints.web_helpers import Start, job_events, until_done


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


class Counted:
    """A request body that counts what the client managed to send."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            piece = b" " * min(self.chunk, self.total - self.sent)
            self.sent += len(piece)
            yield piece


def test_a_50_mb_body_with_content_length_is_413_unread(
    start: Start, events: pytest.LogCaptureFixture
) -> None:
    served = start()
    body = Counted(50_000_000)
    headers = {"Content-Length": str(body.total)}
    response = served.http.post("/runsync", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"].startswith(
        "request_too_large: the body has more than 2000000 bytes; "
    )
    assert body.sent < body.total  # refused at the headers: the client could not send it all
    assert job_events(events) == []
    # The same server still runs a job that fits, and logs it: the check above can see events.
    job = {"input": {"api_key": served.new_key(), "text": "Hi."}}
    assert served.http.post("/runsync", json=job).json()["status"] == "COMPLETED"
    assert len(job_events(events)) == 1


def test_a_chunked_body_is_413_once_it_passes_the_bound(
    start: Start, events: pytest.LogCaptureFixture
) -> None:
    http = start().http
    body = Counted(32_000_000)
    response = http.post("/run", content=body)  # an iterator: sent chunked, no Content-Length
    assert response.status_code == 413
    assert response.json()["error"].startswith("request_too_large: ")
    assert body.sent < body.total
    assert job_events(events) == []


def test_the_bound_is_inclusive(start: Start) -> None:
    served = start(max_body_bytes=1_000)
    job = json.dumps({"input": {"api_key": served.new_key(), "text": "Hi."}})
    exact = job + " " * (1_000 - len(job))
    assert served.http.post("/runsync", content=exact).json()["status"] == "COMPLETED"
    assert served.http.post("/runsync", content=exact + " ").status_code == 413


def test_run_without_a_valid_key_is_401_and_never_queued(
    start: Start, events: pytest.LogCaptureFixture
) -> None:
    served = start()
    for job in ({"text": "No key."}, {"api_key": "stts_wrong", "text": "Wrong key."}):
        refused = served.http.post("/run", json={"input": job})
        assert refused.status_code == 401
        assert set(refused.json()) == {"error"}
        assert refused.json()["error"].startswith("unauthorized: ")
    # Jobs run in order on one thread: had a refused job been queued, its event would come first.
    job = {"input": {"api_key": served.new_key(), "text": "Keyed."}}
    queued = served.http.post("/run", json=job).json()
    assert until_done(served.http, queued["id"])["status"] == "COMPLETED"
    [event] = job_events(events)
    assert json.loads(event)["success"] is True


def test_a_full_queue_is_503_with_retry_after(start: Start, piper_engine: Engine) -> None:
    engine = GatedEngine(piper_engine)
    served = start(engine, max_queued_jobs=2, concurrency=1)
    key = served.new_key()

    def submit(text: str) -> httpx.Response:
        return served.http.post("/run", json={"input": {"api_key": key, "text": text}})

    try:
        running = submit("Held in the engine.")
        assert running.status_code == 200
        assert engine.entered.wait(timeout=60)
        waiting = submit("Waiting behind it.")
        assert waiting.status_code == 200 and waiting.json()["status"] == "IN_QUEUE"
        full = submit("One too many.")
        assert full.status_code == 503
        assert int(full.headers["Retry-After"]) >= 1
        assert full.json()["error"].startswith("queue_full: ")
    finally:
        engine.gate.set()
    for job in (running, waiting):
        assert until_done(served.http, job.json()["id"])["status"] == "COMPLETED"
    assert submit("Room again.").status_code == 200
