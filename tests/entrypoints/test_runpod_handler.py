"""RunPod: the real SDK running our handler, as a one-off test job and as its local API."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverless_tts.runpod_worker import (
    is_local_test_run,
    make_stream_handler,
    runpod_config,
)
from shared.worker import WorkerContext
from tests.audio_probe import audio_stream, ffprobe_json
from tests.processes import REPO, clean_env, run_python
from tests.servers import free_port, wait_for_port


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "data")


@pytest.fixture
def subprocess_key(worker_env: dict[str, str]) -> str:
    """A tenant made through the CLI, in the data directory the subprocesses share."""
    done = run_python(worker_env, "-m", "serverless_tts.cli", "tenants", "create", "acme")
    assert done.returncode == 0, done.stderr
    return done.stdout.split("API key (shown once, keep it): ", 1)[1].split()[0]


def run_test_input(
    job_input: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    test_input = json.dumps({"input": job_input})
    return run_python(env, "runpod_handler.py", "--test_input", test_input, timeout=300)


def test_test_input_run_prints_a_decodable_mp3(
    worker_env: dict[str, str], subprocess_key: str
) -> None:
    job = {"api_key": subprocess_key, "text": "Hello there.", "format": "mp3", "delivery": "base64"}
    done = run_test_input(job, worker_env)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(row for row in done.stdout.splitlines() if row.startswith('{"output": '))
    [item] = json.loads(line)["output"]
    stream = audio_stream(ffprobe_json(base64.b64decode(item["audio_base64"]), "mp3"))
    assert stream["codec_name"] == "mp3"
    assert subprocess_key not in done.stdout + done.stderr


def test_test_input_run_with_a_bad_key_exits_1_with_the_code(worker_env: dict[str, str]) -> None:
    done = run_test_input({"api_key": "stts_wrong", "text": "Hi."}, worker_env)
    assert done.returncode == 1
    assert "unauthorized: " in done.stdout + done.stderr


@pytest.fixture
def runpod_api(worker_env: dict[str, str], subprocess_key: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "runpod_handler.py",
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(port),
        ],
        env=worker_env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sdk_local_api_runsync_answers_with_decodable_audio(
    runpod_api: str, subprocess_key: str
) -> None:
    job = {
        "api_key": subprocess_key,
        "text": "Hello from RunPod.",
        "format": "wav",
        "delivery": "base64",
    }
    reply = httpx.post(f"{runpod_api}/runsync", json={"input": job}, timeout=120).json()
    assert reply["status"] == "COMPLETED", reply
    [item] = reply["output"]
    assert audio_stream(ffprobe_json(base64.b64decode(item["audio_base64"]), "wav"))
    streamed = {**job, "text": "One sentence. And another one.", "delivery": "stream"}
    reply = httpx.post(f"{runpod_api}/runsync", json={"input": streamed}, timeout=120).json()
    assert [chunk["seq"] for chunk in reply["output"]] == list(range(len(reply["output"])))
    assert reply["output"][-1]["final"] is True


def test_sdk_local_api_urls_point_at_a_server_that_serves_them(
    runpod_api: str, subprocess_key: str
) -> None:
    """The local API's own port serves only jobs; the audio a URL names is served beside it."""
    job = {"api_key": subprocess_key, "text": "Fetch me by URL.", "format": "mp3"}
    reply = httpx.post(f"{runpod_api}/runsync", json={"input": job}, timeout=120).json()
    assert reply["status"] == "COMPLETED", reply
    [item] = reply["output"]
    assert item["url"].startswith("http://127.0.0.1:")
    audio = httpx.get(item["url"], timeout=30)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
    assert audio_stream(ffprobe_json(audio.content, "mp3"))["codec_name"] == "mp3"


def collect(handler: Any, job: dict[str, Any]) -> list[dict[str, Any]]:
    async def gather() -> list[dict[str, Any]]:
        return [item async for item in handler(job)]

    return asyncio.run(gather())


def test_generator_handler_yields_ordered_chunks_under_1mb(
    worker: WorkerContext, api_key: str
) -> None:
    text = " ".join(f"Streamed sentence {n}." for n in range(5))
    job = {"id": "job-1", "input": {"api_key": api_key, "text": text, "delivery": "stream"}}
    items = collect(make_stream_handler(worker), job)
    assert [item["seq"] for item in items] == list(range(len(items)))
    assert len(items) >= 3 and items[-1]["final"] is True
    assert all(len(json.dumps(item)) < 1_000_000 for item in items)
    assert {item["request_id"] for item in items} == {"job-1"}
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert ffprobe_json(audio, "wav")


def test_generator_handler_reports_errors_as_a_string(worker: WorkerContext) -> None:
    items = collect(make_stream_handler(worker), {"id": "j", "input": {"text": "no key"}})
    assert items == [{"error": "unauthorized: a valid api_key is required"}]


@pytest.mark.parametrize(
    ("argv", "environ", "local"),
    [
        (["h.py", "--test_input", "{}"], {}, True),
        (["h.py"], {}, True),
        (["h.py"], {"RUNPOD_WEBHOOK_GET_JOB": "https://api.runpod.ai/x"}, False),
        (["h.py", "--rp_serve_api"], {}, False),
        (["h.py"], {"RUNPOD_REALTIME_PORT": "8080"}, False),
    ],
)
def test_local_test_runs_are_told_apart_from_the_platform(
    argv: list[str], environ: dict[str, str], local: bool
) -> None:
    assert is_local_test_run(argv, environ) is local


def test_config_turns_on_aggregate_stream_and_concurrency(worker: WorkerContext) -> None:
    worker.settings = worker.settings.model_copy(update={"concurrency": 4})
    config = runpod_config(worker, ["h.py"], {"RUNPOD_WEBHOOK_GET_JOB": "x"})
    assert config["return_aggregate_stream"] is True
    assert config["concurrency_modifier"](1) == 4
