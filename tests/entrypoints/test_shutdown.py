"""SIGTERM on real worker processes (``serverless-tts serve`` and RunPod's local API), a job held
in the real engine meanwhile: the job in flight finishes, and its usage row is written before
the process exits 0."""

from __future__ import annotations

import base64
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.errors import ShuttingDown
from shared.lifecycle import Lifecycle
from tests.audio_probe import audio_stream, ffprobe_json
from tests.processes import clean_env
from tests.served_process import (  # noqa: F401  (data_dir_fixture, api_key_fixture: fixtures)
    api_key_fixture,
    data_dir_fixture,
    listening,
    spawn,
    until,
    usage_of,
)
from tests.servers import free_port

GRACE_S = 60  # far above what the held job needs: the process must exit on its own, well within
HELD = "tests.entrypoints.held_worker"
Worker = tuple[subprocess.Popen[str], str, Path]


@pytest.fixture
def held(data_dir: Path, api_key: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start an entry point with its engine held at a gate (files in its own folder)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    env = clean_env(data_dir) | {
        "GATE_DIR": str(gate),
        "TTS_SHUTDOWN_GRACE_S": str(GRACE_S),
        "TTS_CREATE_DEV_TENANT": "false",
    }
    with ExitStack() as stack:

        def start(*argv: str, port: int) -> Worker:
            [(proc, base)] = stack.enter_context(listening([(spawn([HELD, *argv], env), port)]))
            return proc, base, gate

        yield start


def _hold_a_job(http: httpx.Client, job: dict[str, Any], gate: Path) -> Callable[[], Any]:
    """Post ``job`` from a thread and wait until it is in the engine; the returned call opens
    the gate and gives the job's reply."""
    replies: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: replies.append(http.post("/runsync", json=job)))
    thread.start()
    until(lambda: (gate / "entered").exists(), "the job reaching the engine")

    def release() -> Any:
        (gate / "open").write_text("")
        thread.join(timeout=60)
        return replies[0].json()

    return release


def test_sigterm_on_serve_finishes_the_job_in_flight_refuses_new_ones_and_writes_its_usage(
    held: Callable[..., Worker], api_key: str, data_dir: Path
) -> None:
    port = free_port()
    proc, base, gate = held("serve", "--port", str(port), port=port)
    http = httpx.Client(base_url=base, timeout=120)
    text = "Finish me before you go."
    job = {"input": {"api_key": api_key, "text": text, "format": "wav", "delivery": "base64"}}
    release = _hold_a_job(http, job, gate)

    proc.send_signal(signal.SIGTERM)
    health = until(
        lambda: (reply := http.get("/health")).status_code == 503 and reply,
        "health turning 503",
    )
    assert health.json()["error"].startswith("engine_unavailable: the worker is shutting down")
    refused = http.post("/runsync", json=job).json()
    assert refused["status"] == "FAILED"
    assert refused["error"].startswith("engine_unavailable: the worker is shutting down")
    bearer = {"Authorization": f"Bearer {api_key}"}
    refused_v1 = http.post("/v1/synthesize", json={"text": "Too late."}, headers=bearer)
    assert refused_v1.status_code == 503
    assert refused_v1.json()["error"]["code"] == "engine_unavailable"
    assert proc.poll() is None  # still draining: the held job has not ended

    done = release()
    assert done["status"] == "COMPLETED", done
    audio = base64.b64decode(done["output"][0]["audio_base64"])
    assert audio_stream(ffprobe_json(audio, ".wav"))["codec_name"] == "pcm_s16le"
    output, _ = proc.communicate(timeout=GRACE_S)
    assert proc.returncode == 0, output
    # The finished job's row; refused jobs were never admitted, so they charge nothing.
    assert [(code, chars) for _, code, chars in usage_of(data_dir)] == [(None, len(text))]


def test_sigterm_on_serve_runs_the_run_jobs_it_queued_and_refuses_new_ones(
    held: Callable[..., Worker], api_key: str, data_dir: Path
) -> None:
    """A ``/run`` job is admitted when it is queued: one still waiting for the queue's only
    thread (TTS_CONCURRENCY 1) when SIGTERM comes runs during the drain, and the process
    waits for it; a ``/run`` after the signal is refused."""
    port = free_port()
    proc, base, gate = held("serve", "--port", str(port), port=port)
    http = httpx.Client(base_url=base, timeout=120)
    texts = ["First in the queue.", "Second, still waiting."]
    ids = [
        http.post("/run", json={"input": {"api_key": api_key, "text": text}}).json()["id"]
        for text in texts
    ]
    until(lambda: (gate / "entered").exists(), "the first job reaching the engine")
    assert http.get(f"/status/{ids[1]}").json()["status"] == "IN_QUEUE"

    proc.send_signal(signal.SIGTERM)
    until(lambda: http.get("/health").status_code == 503, "health turning 503")
    refused = http.post("/run", json={"input": {"api_key": api_key, "text": "Too late."}})
    assert refused.status_code == 503
    assert "the worker is shutting down" in refused.text
    assert proc.poll() is None  # still draining: both queued jobs are in its count

    (gate / "open").write_text("")
    output, _ = proc.communicate(timeout=GRACE_S)
    assert proc.returncode == 0, output
    rows = {request_id: (code, chars) for request_id, code, chars in usage_of(data_dir)}
    assert rows == {job_id: (None, len(text)) for job_id, text in zip(ids, texts, strict=True)}


def test_sigterm_on_the_runpod_local_api_finishes_the_job_and_writes_its_usage(
    held: Callable[..., Worker], api_key: str, data_dir: Path
) -> None:
    """The SDK's uvicorn stops listening at once (no 503: new connections are refused), waits
    for the job in flight, and the process still exits 0 through atexit, rows written."""
    port = free_port()
    argv = ["runpod_handler.py", "--rp_serve_api", "--rp_api_host", "127.0.0.1"]
    proc, base, gate = held(*argv, "--rp_api_port", str(port), port=port)
    http = httpx.Client(base_url=base, timeout=120)
    text = "The local API finishes me."
    job = {"input": {"api_key": api_key, "text": text, "format": "wav", "delivery": "base64"}}
    release = _hold_a_job(http, job, gate)

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # not a measurement: gives the signal a chance to arrive before the gate opens
    assert proc.poll() is None
    done = release()
    assert done["status"] == "COMPLETED", done
    assert done["output"][0]["bytes"] > 0
    output, _ = proc.communicate(timeout=GRACE_S)
    assert proc.returncode == 0, output
    assert [(code, chars) for _, code, chars in usage_of(data_dir)] == [(None, len(text))]


def test_a_drain_refuses_new_jobs_and_says_when_the_grace_ran_out() -> None:
    lifecycle = Lifecycle()
    lifecycle.admit()  # a job that will not end within the grace
    assert lifecycle.drain(0.05) is False
    with pytest.raises(ShuttingDown):
        lifecycle.admit()  # refused, but counted until its release like any job
    lifecycle.release()
    lifecycle.release()
    assert lifecycle.active == 0 and lifecycle.drain(0.05) is True


def test_a_job_admitted_ahead_is_drained_for_and_its_dispatch_is_not_refused() -> None:
    lifecycle = Lifecycle()
    queued, never_run = lifecycle.admit_ahead(), lifecycle.admit_ahead()
    assert lifecycle.drain(0.05) is False  # both counted from their submit
    with pytest.raises(ShuttingDown):
        lifecycle.admit_ahead()  # refused, and not counted
    with queued.running():
        lifecycle.admit()  # its dispatch takes the admission while draining
        with pytest.raises(ShuttingDown):
            lifecycle.admit()  # only once: another job in the same run is refused
        lifecycle.release()
    lifecycle.release()  # the refused admit's release
    assert lifecycle.active == 1
    never_run.cancel()
    never_run.cancel()  # given back once
    assert lifecycle.active == 0 and lifecycle.drain(0.05) is True
