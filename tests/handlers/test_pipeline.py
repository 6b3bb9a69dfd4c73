"""The transport-neutral pipeline: typed outputs, the engine's own thread, one event and usage
row per job on every path. Engines are the real Piper and XTTS code, wrapped only to record the
order in which their steps run (no clock is asserted: the order is the evidence)."""

from __future__ import annotations

import base64
import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from serverless_tts.runpod_shapes import run_job, start_job
from shared.config import Settings
from shared.engines.base import Engine, Pcm, Voice
from shared.errors import EngineUnavailable, ErrorCode, TTSError
from shared.jobs import ApiKeyCredentials, AudioChunk, SynthesisResult
from shared.telemetry import JOB_LOGGER
from shared.tenants.base import UNLIMITED, TenantLimits
from shared.worker import WorkerContext
from tests.audio_probe import ffprobe_json
from tests.engine_wrappers import RecordingEngine, WrappedEngine, begins_between, recording_worker
from tests.worker_fixtures import build_worker, usage_rows


@pytest.fixture
def recording(piper_engine: Engine) -> RecordingEngine:
    return RecordingEngine(piper_engine)


@pytest.fixture
def rec_worker(
    make_worker: Callable[[Engine], WorkerContext],
    recording: RecordingEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerContext:
    return recording_worker(make_worker, recording, monkeypatch)


@pytest.fixture
def rec_key(rec_worker: WorkerContext) -> str:
    return rec_worker.tenants.create_tenant("acme", UNLIMITED).api_key


def start_alpha(worker: WorkerContext, key: str, fmt: str) -> Iterator[dict[str, Any]]:
    """Job A: a twelve-sentence stream, started (its first chunk is on its way)."""
    text = " ".join(f"Alpha sentence number {n}." for n in range(12))
    job = {"api_key": key, "text": text, "delivery": "stream", "format": fmt}
    return start_job(job, worker, job_id="A")


def test_a_slow_stream_reader_does_not_delay_another_job_beyond_one_engine_step(
    rec_worker: WorkerContext, rec_key: str, recording: RecordingEngine
) -> None:
    stream = start_alpha(rec_worker, rec_key, "pcm16")
    items = [next(stream)]
    reader_done, b_done = threading.Event(), threading.Event()

    def slow_reader() -> None:  # a phone line: it takes each chunk, then waits
        for index, item in enumerate(stream):
            if index == 2:  # never finish before B did, however slow the machine
                assert b_done.wait(timeout=120)
            time.sleep(0.3)
            items.append(item)
        reader_done.set()

    threading.Thread(target=slow_reader, daemon=True).start()
    [result] = run_job(
        {"api_key": rec_key, "text": "Bravo speaks now.", "delivery": "base64"},
        rec_worker,
        job_id="B",
    )
    b_done.set()
    # After B reached the engine, at most the one step A had in hand ran before B's.
    assert len(begins_between(recording.events, ("submit", "B"), "Alpha")) <= 1
    assert ("begin", "Bravo speaks now.") in recording.events
    assert ffprobe_json(base64.b64decode(result["audio_base64"]), "wav")
    # A loses nothing for the wait: all its sentences arrive, in order.
    assert reader_done.wait(timeout=120)
    assert items[-1]["final"] is True
    spoken = [text for kind, text in recording.events if kind == "begin"]
    alphas = list(dict.fromkeys(text for text in spoken if text.startswith("Alpha")))
    assert alphas == [f"Alpha sentence number {n}." for n in range(12)]


def test_closing_a_stream_midway_frees_the_engine_for_the_next_job_at_once(
    rec_worker: WorkerContext, rec_key: str, recording: RecordingEngine
) -> None:
    stream = start_alpha(rec_worker, rec_key, "mp3")
    next(stream)
    recording.note("closed", "A")
    stream.close()  # type: ignore[attr-defined]
    run_job({"api_key": rec_key, "text": "Bravo is next.", "delivery": "base64"}, rec_worker)
    assert len(begins_between(recording.events, ("closed", "A"), "Alpha")) <= 1
    after_b = recording.events[recording.events.index(("begin", "Bravo is next.")) :]
    assert not any(text.startswith("Alpha") for _, text in after_b), "A kept running"
    assert rec_worker.engines.default.active == 0


def test_a_stream_closed_or_dropped_unread_still_leaves_its_event_and_usage_row(
    worker: WorkerContext, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = {"text": "One. Two. Three.", "delivery": "stream", "format": "pcm16"}
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        closed = dispatch(raw, ApiKeyCredentials.of(api_key), worker, job_id="closed")
        assert isinstance(closed, AudioStream)
        next(iter(closed))
        closed.close()
        dropped = dispatch(raw, ApiKeyCredentials.of(api_key), worker, job_id="dropped")
        del dropped
        gc.collect()
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == JOB_LOGGER]
    assert [(e["request_id"], e["error_code"]) for e in events] == [
        ("closed", "cancelled"),
        ("dropped", "cancelled"),
    ]
    rows = usage_rows(worker)
    assert [(row["request_id"], row["error_code"]) for row in rows] == [
        ("closed", "cancelled"),
        ("dropped", "cancelled"),
    ]
    assert all(row["input_chars"] == len("One.Two.Three.") for row in rows)  # charged: logged
    assert worker.engines.default.active == 0


def test_handlers_yield_raw_bytes_and_summaries_not_transport_shapes(
    worker: WorkerContext, api_key: str
) -> None:
    credentials = ApiKeyCredentials.of(api_key)
    whole = dispatch(
        {"text": "Raw bytes.", "delivery": "base64", "format": "mp3"}, credentials, worker
    )
    assert isinstance(whole, SynthesisResult) and isinstance(whole.audio, bytes)
    assert "audio" not in whole.model_dump(mode="json") and whole.bytes == len(whole.audio)
    stream = dispatch(
        {"text": "Raw. Bytes.", "delivery": "stream", "format": "mp3"}, credentials, worker
    )
    assert isinstance(stream, AudioStream) and stream.info.format == "mp3"
    chunks: list[AudioChunk] = list(stream)
    assert all(isinstance(chunk.data, bytes) for chunk in chunks)
    assert [chunk.final for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    summary = chunks[-1].summary
    assert summary is not None and summary.bytes == sum(len(c.data) for c in chunks)
    assert summary.voice_version == worker.engines.default.engine.model_version
    assert ffprobe_json(b"".join(chunk.data for chunk in chunks), "mp3")


def test_results_and_usage_rows_name_the_engine_and_voice_version_that_spoke(
    worker: WorkerContext, api_key: str
) -> None:
    [result] = run_job({"api_key": api_key, "text": "Who spoke?", "delivery": "base64"}, worker)
    engine = worker.engines.default.engine
    # Named as voices.list names it: built-in voices are "builtin:<name>".
    listed = f"builtin:{engine.default_voice}"
    assert (result["engine"], result["voice"]) == ("piper", listed)
    assert result["voice_version"] == engine.model_version
    [row] = usage_rows(worker)
    assert (row["engine"], row["voice"], row["voice_version"]) == (
        "piper",
        listed,
        engine.model_version,
    )


@pytest.mark.parametrize("text", ["...", " ?! ", "—", "…"])
def test_punctuation_only_text_is_invalid_input_and_charged_nothing(
    worker: WorkerContext, text: str
) -> None:
    key = worker.tenants.create_tenant("punct", TenantLimits(monthly_char_quota=5)).api_key
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": key, "text": text, "delivery": "base64"}, worker)
    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert "nothing to speak" in refused.value.message
    [row] = usage_rows(worker)
    assert row["input_chars"] == 0 and row["error_code"] == "invalid_input"
    run_job({"api_key": key, "text": "Hello", "delivery": "base64"}, worker)  # 5 of 5: fits


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"speed": "1.5"}, ErrorCode.INVALID_INPUT),
        ({"speed": True}, ErrorCode.INVALID_INPUT),
        ({"cache": "false"}, ErrorCode.INVALID_INPUT),
        ({"cache": 0}, ErrorCode.INVALID_INPUT),
        ({"sample_rate": "16000"}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"sample_rate": 16000.0}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"text": 42}, ErrorCode.INVALID_INPUT),
        ({"format": 3}, ErrorCode.UNSUPPORTED_FORMAT),
    ],
)
def test_one_type_rule_for_every_field_no_coercion(
    worker: WorkerContext, api_key: str, fields: dict[str, Any], code: ErrorCode
) -> None:
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": api_key, "text": "Types.", **fields}, worker)
    assert refused.value.code == code


def test_an_integer_is_a_fine_decimal(worker: WorkerContext, api_key: str) -> None:
    [result] = run_job(
        {"api_key": api_key, "text": "Two.", "speed": 2, "delivery": "base64"}, worker
    )
    assert result["duration_s"] > 0


def test_a_job_that_fails_to_parse_is_logged_as_the_action_it_asked_for(
    worker: WorkerContext, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = [
        {"api_key": api_key, "action": "voices", "surprise": 1},
        {"api_key": api_key, "action": "greetings.warm", "phrases": []},
        {"api_key": api_key, "action": "teleport"},
    ]
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        for raw in bad:
            with pytest.raises(TTSError):
                run_job(raw, worker)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == JOB_LOGGER]
    assert [event["action"] for event in events] == ["voices", "greetings.warm", "unknown"]


def test_greetings_use_the_workers_text_limit_not_the_default(
    make_worker: Callable[[Engine], WorkerContext],
    piper_engine: Engine,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """With TTS_MAX_TEXT_CHARS=20000, a 12,000-char phrase used to raise a raw pydantic error
    reported as ``internal``."""
    roomy = build_worker(
        settings.model_copy(update={"max_text_chars": 20_000}), engine=piper_engine
    )
    try:
        key = roomy.tenants.create_tenant("long", UNLIMITED).api_key
        phrase = ("A long greeting for the caller. " * 400)[:12_000]
        with pytest.raises(TTSError) as missing:
            run_job({"api_key": key, "action": "greetings.get", "text": phrase}, roomy)
        assert missing.value.code == ErrorCode.NOT_FOUND
        too_long = "x" * 20_001
        with pytest.raises(TTSError) as refused:
            run_job({"api_key": key, "action": "greetings.get", "text": too_long}, roomy)
        assert refused.value.code == ErrorCode.TEXT_TOO_LONG
    finally:
        roomy.close()


class OnePhraseEngine(WrappedEngine):
    """Real Piper audio, made once, for any text: a 12,000-character phrase in milliseconds."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        voice = engine.voice(engine.default_voice)
        self._pcm = engine.synthesize("Hello.", voice=voice, language="en", speed=1.0)

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        return self._pcm


def test_greetings_warm_takes_a_phrase_as_long_as_the_worker_allows(
    piper_engine: Engine, settings: Settings
) -> None:
    roomy = build_worker(
        settings.model_copy(update={"max_text_chars": 20_000}), engine=OnePhraseEngine(piper_engine)
    )
    try:
        key = roomy.tenants.create_tenant("long", UNLIMITED).api_key
        phrase = ("A long greeting for the caller. " * 400)[:12_000]
        warm = {"api_key": key, "action": "greetings.warm", "phrases": [phrase], "format": "mp3"}
        [result] = run_job(warm, roomy)
        assert result["greetings"][0]["cached"] is False and result["greetings"][0]["url"]
        get = {"api_key": key, "action": "greetings.get", "text": phrase, "format": "mp3"}
        assert run_job(get, roomy)[0]["cached"] is True
    finally:
        roomy.close()


def test_build_worker_closes_the_store_it_opened_when_the_engine_fails(
    settings: Settings, tmp_path: Path
) -> None:
    broken = settings.model_copy(update={"engine": "xtts", "xtts_model_dir": tmp_path / "none"})
    database = str(broken.sqlite_path)

    def open_database_files() -> int:
        fd_dir = Path("/proc/self/fd")
        count = 0
        for fd in fd_dir.iterdir():
            try:
                if str(fd.readlink()).startswith(database):
                    count += 1
            except OSError:
                continue
        return count

    with pytest.raises(EngineUnavailable) as caught:
        build_worker(broken)
    # The traceback keeps build_worker's frame (and so its store) alive: only an explicit
    # close lets go of the file while the error is still being handled.
    assert caught.traceback is not None
    assert broken.sqlite_path.exists()  # the store was opened ...
    assert open_database_files() == 0  # ... and closed again


def test_a_stream_closed_from_another_thread_while_its_reader_waits_is_cancelled(
    make_worker: Callable[[Engine], WorkerContext],
    piper_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An HTTP disconnect or a platform cancel arrives on another thread than the reader's."""
    third_step, closed = threading.Event(), threading.Event()

    def hold(text: str) -> None:
        if text.startswith("Alpha sentence number 2."):
            third_step.set()
            assert closed.wait(timeout=60)

    recording = RecordingEngine(piper_engine, hold=hold)
    worker = recording_worker(make_worker, recording, monkeypatch)
    key = worker.tenants.create_tenant("acme", UNLIMITED).api_key
    text = " ".join(f"Alpha sentence number {n}." for n in range(12))
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        stream = dispatch(
            {"text": text, "delivery": "stream", "format": "pcm16"},
            ApiKeyCredentials.of(key),
            worker,
            job_id="A",
        )
        assert isinstance(stream, AudioStream)
        read: list[AudioChunk] = []
        reader_done = threading.Event()

        def reader() -> None:
            read.extend(stream)  # blocks in next() once the engine is held at sentence 2
            reader_done.set()

        threading.Thread(target=reader, daemon=True).start()
        assert third_step.wait(timeout=60)
        while len(read) < 2:
            time.sleep(0.01)
        stream.close()  # from this thread, while the reader waits inside next()
        closed.set()
        assert reader_done.wait(timeout=60)
    assert len(read) == 2 and not any(chunk.final for chunk in read)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == JOB_LOGGER]
    assert [(e["request_id"], e["error_code"]) for e in events] == [("A", "cancelled")]
    spoken = {text for kind, text in recording.events if kind == "begin"}
    assert "Alpha sentence number 4." not in spoken  # the render stopped, it did not run on
    deadline = time.monotonic() + 10
    while worker.engines.default.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.engines.default.active == 0
