"""The same jobs on the real coqui-tts XTTS code (random-weight checkpoint): the handlers do not
care which engine speaks."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

import pytest

from serverless_tts.runpod_shapes import run_job, start_job
from shared.engines.base import Engine
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.engine_wrappers import RecordingEngine, recording_worker


@pytest.fixture
def xtts_worker(
    make_worker: Callable[[Engine], WorkerContext], xtts_engine: Engine
) -> WorkerContext:
    return make_worker(xtts_engine)


@pytest.fixture
def xtts_key(xtts_worker: WorkerContext) -> str:
    return xtts_worker.tenants.create_tenant("acme", UNLIMITED).api_key


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Good morning. Thanks for calling."),
        ("ja", "こんにちは。お電話ありがとうございます。"),
        ("zh-cn", "你好。感谢您的来电。"),
    ],
)
def test_xtts_job_in_each_script_gives_24khz_audio(
    xtts_worker: WorkerContext, xtts_key: str, language: str, text: str
) -> None:
    job = {"api_key": xtts_key, "text": text, "language": language, "delivery": "base64"}
    [result] = run_job(job, xtts_worker)
    assert result["engine"] == "xtts" and result["sample_rate"] == 24000
    probe = ffprobe_json(base64.b64decode(result["audio_base64"]), "wav")
    assert int(audio_stream(probe)["sample_rate"]) == 24000
    assert probe_duration_s(probe) == pytest.approx(result["duration_s"], rel=0.05)


def test_xtts_stream_job_chunks_concatenate_to_an_mp3(
    xtts_worker: WorkerContext, xtts_key: str
) -> None:
    job = {"api_key": xtts_key, "text": "First. Second.", "format": "mp3", "delivery": "stream"}
    items = run_job(job, xtts_worker)
    assert len(items) >= 3  # the first segment alone streams in several chunks
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert audio_stream(ffprobe_json(audio, "mp3"))["codec_name"] == "mp3"


def test_xtts_builtin_speakers_are_the_voices(xtts_worker: WorkerContext, xtts_key: str) -> None:
    [voices] = run_job({"action": "voices", "api_key": xtts_key}, xtts_worker)
    ids = [voice["id"] for voice in voices["voices"]]
    assert len(ids) == 2 and voices["default_voice"] in ids
    job = {"api_key": xtts_key, "text": "Hi.", "voice": ids[1], "delivery": "base64"}
    assert run_job(job, xtts_worker)[0]["voice"] == ids[1]


def test_an_xtts_stream_keeps_the_engine_only_to_the_end_of_its_segment(
    make_worker: Callable[[Engine], WorkerContext],
    xtts_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """XTTS keeps a stream's prompt in the model, so another job cannot run mid-segment; it
    runs as soon as the segment ends, before the stream's next segment."""
    b_submitted = threading.Event()
    first_steps: list[str] = []

    def hold(text: str) -> None:
        if text.startswith("First"):
            first_steps.append(text)
            if len(first_steps) == 2:  # A is mid-segment: now let B arrive
                assert b_submitted.wait(timeout=60)

    recording = RecordingEngine(xtts_engine, hold=hold)
    worker = recording_worker(make_worker, recording, monkeypatch)
    key = worker.tenants.create_tenant("acme", UNLIMITED).api_key
    a_text = "First segment speaks. Second segment follows."
    stream = start_job(
        {"api_key": key, "text": a_text, "delivery": "stream", "format": "pcm16"}, worker
    )
    next(stream)
    runner = worker.engines.default
    original_submit = runner.submit

    def submit_b(steps: Any, *, label: str = "") -> Any:
        handle = original_submit(steps, label=label)
        b_submitted.set()
        return handle

    monkeypatch.setattr(runner, "submit", submit_b)
    [result] = run_job({"api_key": key, "text": "Bravo.", "delivery": "base64"}, worker)
    chunks = [next(stream), *stream]
    assert chunks[-1]["final"] is True and result["duration_s"] > 0
    events = recording.events
    b_begin = events.index(("begin", "Bravo."))
    last_first = max(i for i, event in enumerate(events) if event[1].startswith("First"))
    second = events.index(("begin", "Second segment follows."))
    assert len(first_steps) >= 3  # the first segment streamed in several steps
    assert last_first < b_begin < second
