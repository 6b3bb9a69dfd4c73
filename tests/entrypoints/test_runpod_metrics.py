"""On RunPod nothing scrapes ``/metrics``: each job's event is followed in the log by the worker's
figures so far, through both of the worker's handlers and the real dispatcher and Piper."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from serverless_tts.runpod_worker import make_local_test_handler, make_stream_handler
from shared.telemetry import JOB_LOGGER
from shared.worker import WorkerContext
from tests.entrypoints.test_runpod_handler import collect

OK = 'tts_jobs_total{action="synthesize",engine="piper",outcome="ok"}'
REFUSED = 'tts_jobs_total{action="synthesize",engine="none",outcome="unauthorized"}'


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == JOB_LOGGER]


def test_each_streamed_job_logs_the_workers_figures_after_its_event(
    worker: WorkerContext, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_stream_handler(worker)
    job = {"api_key": api_key, "text": "Spoken on RunPod.", "delivery": "stream"}
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        collect(handler, {"id": "rp-1", "input": job})
        collect(handler, {"id": "rp-2", "input": {"text": "no key"}})
    lines = logged(caplog)
    assert [line["event"] for line in lines] == ["job", "metrics", "job", "metrics"]
    first, second = lines[1], lines[3]
    assert (first["job_id"], second["job_id"]) == ("rp-1", "rp-2")
    assert first["metrics"][OK] == 1 and REFUSED not in first["metrics"]
    assert second["metrics"][OK] == 1 and second["metrics"][REFUSED] == 1
    first_audio = (
        'tts_time_to_first_audio_seconds_count{engine="piper",format="wav",cached="false"}'
    )
    assert first["metrics"][first_audio] == 1
    assert first["metrics"]["tts_active_streams"] == 0
    assert all(api_key not in json.dumps(line) for line in lines)


def test_a_local_test_run_logs_the_figures_too_even_when_refused(
    worker: WorkerContext, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_local_test_handler(worker)
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        asyncio.run(handler({"id": "local", "input": {"api_key": api_key, "text": "Local."}}))
        asyncio.run(handler({"id": "refused", "input": {"text": "no key"}}))
    figures = [line for line in logged(caplog) if line["event"] == "metrics"]
    assert [line["job_id"] for line in figures] == ["local", "refused"]
    assert figures[-1]["metrics"][OK] == 1 and figures[-1]["metrics"][REFUSED] == 1
