"""Greetings across engines, on real engines: Piper (behind a wrapper that fails on demand) and
OpenAI speech against its local server (tests/vendor_servers.py).

The rule shown (handlers/greetings.py): ``greetings.get`` answers from the first engine of the
tenant's order that has the phrase cached, and says why any engine before it did not. So a
greeting a fallback warmed is found while the primary is down or its breaker open, and the
primary's own copy answers whenever it has one, its breaker open or not; a get never calls an
engine.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from serverless_tts.runpod_shapes import run_job
from shared.engines.failover import OPEN
from shared.errors import EngineUnavailable, ErrorCode, TTSError
from shared.worker import WorkerContext
from tests.audio_probe import ffprobe_json, probe_duration_s
from tests.handlers.failover_rig import Rig, key_for

HELLO = "Hello, you have reached Acme."


def warm(ctx: WorkerContext, key: str) -> dict[str, Any]:
    [result] = run_job({"action": "greetings.warm", "api_key": key, "phrases": [HELLO]}, ctx)
    return dict(result)


def get(ctx: WorkerContext, key: str) -> dict[str, Any]:
    [result] = run_job({"action": "greetings.get", "api_key": key, "text": HELLO}, ctx)
    return dict(result)


def local_audio(ctx: WorkerContext, url: str) -> bytes:
    """The bytes behind a signed URL of the local store (its key is the URL's path)."""
    key = unquote(urlsplit(url).path).removeprefix("/audio/")
    data = ctx.storage.get(key)
    assert data is not None, url
    return data


def test_a_greeting_a_fallback_warmed_is_found_while_the_primary_is_down(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=10)
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    [made] = warm(ctx, key)["greetings"]
    assert made["cached"] is False and len(rig.server.requests) == 1
    found = get(ctx, key)
    assert (found["engine"], found["cached"]) == ("openai", True)
    assert found["fallback_reason"] == "piper: not_cached"
    assert found["voice"] == "builtin:alloy"  # the fallback's own voice, as it was warmed
    wav = local_audio(ctx, found["url"])
    assert probe_duration_s(ffprobe_json(wav, ".wav")) > 0
    assert len(rig.server.requests) == 1  # a get calls no engine
    assert rig.flaky.calls == 1  # only the warm's attempt


def test_a_greeting_is_found_while_the_primarys_breaker_is_open(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=1, breaker_open_s=600)
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    warm(ctx, key)
    assert ctx.engines.guard("piper").state == OPEN
    found = get(ctx, key)
    assert (found["engine"], found["fallback_reason"]) == ("openai", "piper: not_cached")
    assert rig.flaky.calls == 1


def test_the_primarys_own_copy_answers_even_while_its_breaker_is_open(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=1, breaker_open_s=600)
    key = key_for(ctx)
    warm(ctx, key)  # piper healthy: its own copy
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    # Another job trips piper's breaker.
    job = {"api_key": key, "text": "Something else.", "delivery": "url", "cache": False}
    [spoken] = run_job(job, ctx)
    assert spoken["engine"] == "openai" and ctx.engines.guard("piper").state == OPEN
    found = get(ctx, key)
    assert (found["engine"], found.get("fallback_reason")) == ("piper", None)
    assert rig.flaky.calls == 2  # the warm and the failed synthesize: none for the get


def test_once_the_primary_has_its_own_copy_it_answers_again(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=10)
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    warm(ctx, key)
    rig.flaky.failing = None
    # Healthy but never warmed on piper: the fallback's copy is the only one, and says so.
    assert get(ctx, key)["fallback_reason"] == "piper: not_cached"
    [made] = warm(ctx, key)["greetings"]
    assert made["cached"] is False  # piper's own key was empty: it spoke it now
    found = get(ctx, key)
    assert (found["engine"], found.get("fallback_reason")) == ("piper", None)


def test_a_greeting_no_engine_has_cached_is_not_found(rig: Rig) -> None:
    ctx = rig.worker("piper")
    key = key_for(ctx)
    with pytest.raises(TTSError) as caught:
        get(ctx, key)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "warm it first" in caught.value.message
    assert rig.flaky.calls == 0 and not rig.server.requests
