"""Load: three real ``serverless-tts serve`` processes on one SQLite store and one audio
directory take many concurrent jobs with distinct texts. Every reply is the exact audio a solo
render of its own text gives (deterministic Piper: bit-identical WAV), nothing fails, and after
SIGTERM each process has written one usage row per job it ran."""

from __future__ import annotations

import base64
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from handlers.dispatch import dispatch
from shared.config import Settings
from shared.engines.base import Engine
from shared.jobs import OperatorCredentials
from shared.worker import build_worker
from tests.processes import clean_env
from tests.quiet_piper import silence_noise
from tests.served_process import (  # noqa: F401  (data_dir_fixture, api_key_fixture: fixtures)
    api_key_fixture,
    data_dir_fixture,
    listening,
    spawn,
    usage_of,
)
from tests.servers import free_port

PROCESSES = 3
JOBS = 36  # 12 a process at once: enough to interleave every runner, light on 2 shared cores
WORDS = ["amber", "bison", "cedar", "delta", "ember", "fjord", "gusto", "harbor", "indigo"]


def _text(n: int) -> str:
    return f"Caller {n} asks for {WORDS[n % len(WORDS)]} and {WORDS[(n * 5 + 1) % len(WORDS)]}."


@pytest.fixture
def workers(data_dir: Path, api_key: str) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    env = clean_env(data_dir) | {"TTS_CREATE_DEV_TENANT": "false", "TTS_SHUTDOWN_GRACE_S": "60"}
    ports = [free_port() for _ in range(PROCESSES)]
    procs = [
        (spawn(["tests.quiet_piper", "serve", "--port", str(port)], env), port) for port in ports
    ]
    with listening(procs) as started:
        yield started


def _solo_audio(settings: Settings, engine: Engine, texts: list[str]) -> dict[str, bytes]:
    """Each text rendered alone, one after another, by the same code path in this process."""
    silence_noise()
    worker = build_worker(settings, engine=engine)
    try:
        solo = {}
        for text in texts:
            result = dispatch({"text": text, "delivery": "base64"}, OperatorCredentials(), worker)
            solo[text] = result.audio  # type: ignore[union-attr]
        return solo
    finally:
        worker.close()


def test_concurrent_jobs_on_several_workers_each_get_their_own_audio_and_one_usage_row(
    workers: list[tuple[subprocess.Popen[str], str]],
    api_key: str,
    data_dir: Path,
    settings: Settings,
    piper_engine: Engine,
) -> None:
    texts = [_text(n) for n in range(JOBS)]
    assert len(set(texts)) == JOBS

    def run(n: int) -> tuple[str, httpx.Response]:
        _, base = workers[n % PROCESSES]
        job = {"api_key": api_key, "text": texts[n], "delivery": "base64", "request_id": f"r{n}"}
        with httpx.Client(base_url=base, timeout=300) as http:
            return texts[n], http.post("/runsync", json={"input": job})

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        replies = list(pool.map(run, range(JOBS)))

    statuses = [reply.status_code for _, reply in replies]
    assert statuses == [200] * JOBS
    bodies = [(text, reply.json()) for text, reply in replies]
    failed = [body for _, body in bodies if body["status"] != "COMPLETED"]
    assert not failed
    solo = _solo_audio(settings, piper_engine, texts)
    mixed = [
        text
        for text, body in bodies
        if base64.b64decode(body["output"][0]["audio_base64"]) != solo[text]
    ]
    assert not mixed, f"{len(mixed)} replies are not the audio of their own text"

    for proc, _ in workers:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in workers:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output
    rows = [(request_id, code) for request_id, code, _ in usage_of(data_dir)]
    assert sorted(rows) == sorted((f"r{n}", None) for n in range(JOBS))
