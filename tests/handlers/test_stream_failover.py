"""Stream failover before the first byte, on real engines: OpenAI speech against its local server
(tests/vendor_servers.py) and Piper, one behind a wrapper that fails on demand.

What is shown: a stream whose engine fails before any audio (a 5xx after its retries, a 401
tried once, a 429 asking too long, a refused connection, a timeout, an engine raising, an open
breaker) is spoken by the next engine of the order, and its items and usage row name that
engine and why; a stream that opens with a pause still fails over; once audio went out, a
failure ends the stream with the error and no other engine is tried; with no engine left the
stream fails before its first item.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from serverless_tts.runpod_shapes import run_job, start_job
from shared.engines.base import Engine
from shared.engines.failover import OPEN
from shared.errors import EngineUnavailable, ErrorCode, TTSError
from shared.worker import WorkerContext
from tests.audio_probe import ffprobe_json, probe_duration_s
from tests.handlers.failover_rig import (
    TEXT,
    Rig,
    key_for,
    openai_speech,
)
from tests.servers import free_port
from tests.vendor_servers import Reply
from tests.worker_fixtures import usage_rows


def stream(ctx: WorkerContext, key: str, **fields: Any) -> list[dict[str, Any]]:
    """A whole mp3 stream's items; its audio is checked to be one playable file."""
    job = {"api_key": key, "text": TEXT, "delivery": "stream", "format": "mp3", **fields}
    items = run_job(job, ctx)
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert probe_duration_s(ffprobe_json(audio, ".mp3")) > 0
    assert items[-1]["final"] and not any(item["final"] for item in items[:-1])
    return items


def answered(items: list[dict[str, Any]]) -> tuple[str, str | None]:
    return items[-1]["engine"], items[-1].get("fallback_reason")


def last_row(ctx: WorkerContext) -> tuple[str, str | None, str | None]:
    row = usage_rows(ctx)[-1]
    return row["engine"], row["fallback_reason"], row["error_code"]


def test_a_stream_whose_vendor_answers_5xx_is_spoken_by_the_fallback_after_its_retries(
    rig: Rig,
) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    busy = rig.server.error_reply(503, "server_busy", "overloaded", {"Retry-After": "0"})
    rig.server.answer(busy, busy, busy)
    items = stream(ctx, key_for(ctx))
    assert answered(items) == ("piper", "openai: overloaded")
    assert len(rig.server.requests) == 3  # retry_attempts, as for a whole file
    assert rig.flaky.calls == 1
    assert last_row(ctx) == ("piper", "openai: overloaded", None)
    fallbacks = 'tts_engine_fallbacks_total{from_engine="openai",to_engine="piper",'
    assert ctx.metrics.snapshot()[f'{fallbacks}cause="overloaded"}}'] == 1


def test_a_stream_whose_vendor_answers_401_is_tried_once_then_fails_over(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    rig.server.answer(rig.server.error_reply(401, "invalid_api_key", "Incorrect API key provided"))
    assert answered(stream(ctx, key_for(ctx))) == ("piper", "openai: auth")
    assert len(rig.server.requests) == 1


def test_a_stream_whose_vendor_asks_to_wait_too_long_fails_over_at_once(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    rig.server.answer(
        rig.server.error_reply(429, "rate_limit_exceeded", "slow down", {"Retry-After": "60"})
    )
    assert answered(stream(ctx, key_for(ctx))) == ("piper", "openai: rate_limited")
    assert len(rig.server.requests) == 1


def test_a_stream_whose_vendor_cannot_be_reached_fails_over(rig: Rig) -> None:
    gone = rig.vendor(base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    ctx = rig.worker("openai", openai=gone, breaker_failures=10)
    assert answered(stream(ctx, key_for(ctx))) == ("piper", "openai: unreachable")
    assert rig.flaky.calls == 1


def test_a_stream_whose_vendor_times_out_before_any_audio_fails_over(rig: Rig) -> None:
    slow = rig.vendor(vendor_read_timeout_s=0.3)
    ctx = rig.worker("openai", openai=slow, breaker_failures=10, retry_attempts=2)
    rig.server.answer(Reply(stall_after=0), Reply(stall_after=0))
    assert answered(stream(ctx, key_for(ctx))) == ("piper", "openai: timeout")
    assert len(rig.server.requests) == 2
    assert last_row(ctx) == ("piper", "openai: timeout", None)


def test_a_failing_engine_hands_its_streams_over_and_its_breaker_opens(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_open_s=600)  # open for the whole test
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    for _ in range(2):  # the threshold: each stream's failure counts on piper's breaker
        assert answered(stream(ctx, key)) == ("openai", "piper: engine_unavailable")
    assert ctx.engines.guard("piper").state == OPEN and rig.flaky.calls == 2
    assert answered(stream(ctx, key)) == ("openai", "piper: circuit_open")
    assert rig.flaky.calls == 2  # skipped while open
    assert [row["engine"] for row in usage_rows(ctx)] == ["openai"] * 3


def test_a_stream_that_opens_with_a_pause_still_fails_over(rig: Rig) -> None:
    """The pause is no engine's answer: it waits for the first speech, so nothing has gone out
    when the engine fails there."""
    ctx = rig.worker("piper", breaker_failures=10)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    ssml = f'<speak><break time="400ms"/>{TEXT}</speak>'
    items = stream(ctx, key_for(ctx), text=None, ssml=ssml)
    assert answered(items) == ("openai", "piper: engine_unavailable")
    assert items[-1]["duration_s"] > 0.4


def test_once_audio_went_out_a_failing_stream_ends_with_the_error_on_its_engine(
    rig: Rig, piper_engine: Engine
) -> None:
    vendor_speech = openai_speech(piper_engine)
    slow = rig.vendor(vendor_read_timeout_s=0.3)
    ctx = rig.worker("openai", openai=slow, breaker_failures=10)
    rig.server.answer(Reply(pieces=[vendor_speech[:4000], vendor_speech[4000:]], stall_after=1))
    job = {"api_key": key_for(ctx), "text": TEXT, "delivery": "stream", "format": "pcm16"}
    items = start_job(job, ctx)
    first = next(items)
    assert base64.b64decode(first["audio_base64"]) == vendor_speech[:4000]
    with pytest.raises(TTSError) as caught:
        list(items)
    assert caught.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert rig.flaky.calls == 0  # no other engine was tried
    assert len(rig.server.requests) == 1  # nor the same one again
    assert last_row(ctx) == ("openai", None, "engine_unavailable")


def test_with_no_engine_left_a_stream_fails_before_its_first_item(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=10)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    rig.server.answer(rig.server.error_reply(401, "invalid_api_key", "Incorrect API key provided"))
    job = {"api_key": key_for(ctx), "text": TEXT, "delivery": "stream", "format": "mp3"}
    with pytest.raises(TTSError) as caught:
        start_job(job, ctx)
    assert caught.value.code is ErrorCode.ENGINE_UNAVAILABLE
    assert last_row(ctx) == ("piper", None, "engine_unavailable")
