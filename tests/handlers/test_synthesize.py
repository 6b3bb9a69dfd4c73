"""The synthesize job end to end on the embedded defaults: real Piper speech, real encoders,
SQLite auth and local storage; every audio file checked with ffprobe."""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import numpy as np
import pytest
import soundfile

from serverless_tts.runpod_shapes import MAX_STREAM_AUDIO_BYTES, run_job, start_job
from shared.engines.render_stream import DEFAULT_QUEUE_CHUNKS
from shared.errors import ErrorCode, TTSError
from shared.storage.local import LocalAudioStore
from shared.telemetry import JOB_LOGGER
from shared.worker import WorkerContext
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s


def job(api_key: str, **fields: Any) -> dict[str, Any]:
    return {"api_key": api_key, "text": "Hello there. How are you today?", **fields}


def error_code(raw: object, worker: WorkerContext) -> ErrorCode:
    with pytest.raises(TTSError) as caught:
        run_job(raw, worker)
    return caught.value.code


def test_base64_mp3_decodes_with_the_reported_duration(worker: WorkerContext, api_key: str) -> None:
    [result] = run_job(job(api_key, format="mp3", delivery="base64"), worker)
    data = base64.b64decode(result["audio_base64"])
    probe = ffprobe_json(data, "mp3")
    assert audio_stream(probe)["codec_name"] == "mp3"
    assert int(audio_stream(probe)["sample_rate"]) == result["sample_rate"]
    assert probe_duration_s(probe) == pytest.approx(result["duration_s"], rel=0.05)
    assert result["bytes"] == len(data) and result["content_type"] == "audio/mpeg"
    assert result["engine"] == "piper" and result["cached"] is False
    assert set(result["timings"]) >= {"auth_ms", "synth_ms", "encode_ms", "total_ms"}


def test_url_delivery_stores_audio_under_the_tenants_own_prefix(
    worker: WorkerContext, api_key: str
) -> None:
    [result] = run_job(job(api_key, format="ogg_opus", request_id="req-1"), worker)
    tenant = worker.tenants.authenticate(api_key)
    assert result["request_id"] == "req-1"
    assert f"/audio/tts/{tenant.id}/piper/" in result["url"]
    assert "expires_at" in result and "audio_base64" not in result
    stored = list((worker.settings.audio_dir / "tts" / tenant.id).rglob("*.ogg"))
    assert len(stored) == 1
    stream = audio_stream(ffprobe_json(stored[0].read_bytes(), "ogg"))
    assert stream["codec_name"] == "opus" and int(stream["channels"]) == 1


def test_mulaw_for_twilio_is_8khz_raw_with_one_byte_per_sample(
    worker: WorkerContext, api_key: str
) -> None:
    [result] = run_job(job(api_key, format="mulaw", delivery="base64"), worker)
    data = base64.b64decode(result["audio_base64"])
    assert result["sample_rate"] == 8000 and result["content_type"] == "audio/x-mulaw"
    assert len(data) == pytest.approx(result["duration_s"] * 8000, rel=0.01)


def test_requested_sample_rate_is_delivered(worker: WorkerContext, api_key: str) -> None:
    [result] = run_job(job(api_key, format="wav", sample_rate=16000, delivery="base64"), worker)
    stream = audio_stream(ffprobe_json(base64.b64decode(result["audio_base64"]), "wav"))
    assert int(stream["sample_rate"]) == 16000 and stream["codec_name"] == "pcm_s16le"


def test_ssml_break_becomes_real_silence(worker: WorkerContext, api_key: str) -> None:
    plain = {"api_key": api_key, "ssml": "<speak>Hello there.</speak>", "delivery": "base64"}
    paused = {**plain, "ssml": '<speak>Hello there.<break time="2s"/></speak>'}
    [without] = run_job(plain, worker)
    [with_break] = run_job(paused, worker)
    # Piper samples noise, so the speech itself varies by ~0.1 s between runs: measure the
    # silence in the audio rather than the difference of two totals.
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(with_break["audio_base64"])))
    trailing_zeros = len(samples) - len(np.trim_zeros(samples, "b"))
    assert trailing_zeros / rate == pytest.approx(2.0, abs=0.02)
    assert without["duration_s"] < with_break["duration_s"] - 1.5


def test_stream_yields_ordered_chunks_under_1mb_that_form_one_decodable_file(
    worker: WorkerContext, api_key: str
) -> None:
    text = " ".join(f"This is sentence number {n} of the stream." for n in range(6))
    items = run_job(job(api_key, text=text, format="mp3", delivery="stream"), worker)
    assert [item["seq"] for item in items] == list(range(len(items)))
    assert len(items) >= 3  # first sentence streamed, then one per later sentence
    assert [item["final"] for item in items] == [False] * (len(items) - 1) + [True]
    assert all(len(json.dumps(item)) < 1_000_000 for item in items)
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert items[-1]["bytes"] == len(audio)
    duration = probe_duration_s(ffprobe_json(audio, "mp3"))
    assert duration == pytest.approx(items[-1]["duration_s"], rel=0.05)


def test_large_stream_results_are_cut_into_items_under_the_limit(
    worker: WorkerContext, api_key: str
) -> None:
    text = "A fairly long sentence that keeps going so the raw audio is big enough. " * 4
    items = run_job(
        job(api_key, text=text, format="wav", sample_rate=48000, delivery="stream"), worker
    )
    sizes = [len(base64.b64decode(item["audio_base64"])) for item in items]
    assert max(sizes) <= MAX_STREAM_AUDIO_BYTES
    assert sum(sizes) > MAX_STREAM_AUDIO_BYTES  # the cap was really exercised


def test_first_stream_chunk_arrives_before_the_rest_is_made(
    worker: WorkerContext, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoken: list[str] = []
    engine = worker.engines.default.engine
    original = type(engine).stream

    def counting(self: Any, text: str, **kwargs: Any) -> Any:
        spoken.append(text)
        return original(self, text, **kwargs)

    monkeypatch.setattr(type(engine), "stream", counting)
    sentences = [f"This is sentence {n}." for n in range(10)]
    items = start_job(
        job(api_key, text=" ".join(sentences), delivery="stream", format="pcm16"), worker
    )
    next(items)
    # The engine runs ahead of its reader only by the render queue's bound (and the step in
    # hand): the first chunk came before the rest of the text was made.
    assert 1 <= len(spoken) <= DEFAULT_QUEUE_CHUNKS + 2 < len(sentences)
    list(items)
    # Piper's streaming is cheap, so every segment streams, in order.
    assert spoken == sentences


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"voice": "nobody"}, ErrorCode.VOICE_NOT_FOUND),
        ({"language": "ja"}, ErrorCode.UNSUPPORTED_LANGUAGE),
        ({"format": "flac", "delivery": "stream"}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"format": "mulaw", "sample_rate": 16000}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"text": "   "}, ErrorCode.INVALID_INPUT),
        ({"text": None, "ssml": "<speak><unclosed></speak>"}, ErrorCode.INVALID_SSML),
    ],
)
def test_problems_are_refused_before_any_audio_is_made(
    worker: WorkerContext, api_key: str, fields: dict[str, Any], code: ErrorCode
) -> None:
    raw = {k: v for k, v in job(api_key, **fields).items() if v is not None}
    assert error_code(raw, worker) == code


def test_inline_audio_above_the_configured_cap_is_result_too_large(
    worker: WorkerContext, api_key: str
) -> None:
    worker.settings = worker.settings.model_copy(update={"max_base64_bytes": 1000})
    code = error_code(job(api_key, format="wav", delivery="base64"), worker)
    assert code == ErrorCode.RESULT_TOO_LARGE


@pytest.mark.parametrize("kind", ["missing", "wrong", "disabled"])
def test_bad_keys_are_unauthorized(worker: WorkerContext, api_key: str, kind: str) -> None:
    raw = job(api_key)
    if kind == "missing":
        del raw["api_key"]
    elif kind == "wrong":
        raw["api_key"] = api_key[:-3] + ("xyz" if not api_key.endswith("xyz") else "abc")
    else:
        worker.tenants.set_active(worker.tenants.authenticate(api_key).id, False)
    assert error_code(raw, worker) == ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("action", ["voices", "health"])
def test_every_job_kind_needs_a_valid_key(worker: WorkerContext, action: str) -> None:
    assert error_code({"action": action, "api_key": "stts_x"}, worker) == ErrorCode.UNAUTHORIZED


def test_voices_and_health_describe_the_engine(worker: WorkerContext, api_key: str) -> None:
    [voices] = run_job({"action": "voices", "api_key": api_key}, worker)
    assert voices["default_voice"] in [voice["id"] for voice in voices["voices"]]
    [health] = run_job({"action": "health", "api_key": api_key}, worker)
    engine = worker.engines.default.engine
    assert health["engine"] == "piper" and health["sample_rate"] == engine.sample_rate


def test_worker_still_serves_after_100_bad_jobs(worker: WorkerContext, api_key: str) -> None:
    bad_jobs: list[object] = [
        None,
        [],
        {"text": "no key"},
        job("stts_wrong"),
        job(api_key, speed=9),
        job(api_key, format="aiff"),
        job(api_key, voice="nobody"),
        job(api_key, text="x" * 20_000),
        {"api_key": api_key, "ssml": "<speak><oops"},
        job(api_key, delivery="carrier-pigeon"),
    ]
    for n in range(100):
        with pytest.raises(TTSError):
            run_job(bad_jobs[n % len(bad_jobs)], worker)
    [result] = run_job(job(api_key, delivery="base64"), worker)
    assert ffprobe_json(base64.b64decode(result["audio_base64"]), "wav")


def test_job_event_is_logged_without_the_key_or_the_text(
    worker: WorkerContext, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = "A very private sentence about my bank account."
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        run_job(job(api_key, text=text, delivery="base64"), worker)
        with pytest.raises(TTSError):
            run_job(job(api_key, text=text, voice="nobody"), worker)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == JOB_LOGGER]
    assert [e["success"] for e in events] == [True, False]
    assert events[1]["error_code"] == "voice_not_found"
    assert events[0]["engine"] == "piper" and events[0]["chars"] == len(text)
    assert events[0]["cached"] is False and events[0]["latency_ms"] > 0
    logged = caplog.text
    assert api_key not in logged and "bank account" not in logged


def test_local_store_refuses_another_tenants_object_with_this_tenants_url(
    worker: WorkerContext, api_key: str
) -> None:
    other_key = worker.tenants.create_tenant("globex").api_key
    [mine] = run_job(job(api_key), worker)
    [theirs] = run_job(job(other_key), worker)
    store = worker.storage
    assert isinstance(store, LocalAudioStore)
    my_query = mine["url"].split("?", 1)[1]
    their_key = theirs["url"].split("/audio/", 1)[1].split("?", 1)[0]
    expires, sig = (part.split("=", 1)[1] for part in my_query.split("&"))
    with pytest.raises(Exception, match="bad signature"):
        store.open_signed(their_key, expires, sig)
