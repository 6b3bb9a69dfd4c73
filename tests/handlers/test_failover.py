"""Engine failover on real engines: Piper, and OpenAI speech against its local server
(tests/vendor_servers.py), one behind a wrapper that fails on demand.

What is shown: a failing primary hands the job to the next engine, and the result and usage row
name it and why; the breaker opens after its threshold, skips the primary while open, lets one
probe through once its open time is over and closes on success; a 401 is tried once, a 503 with
a short Retry-After is retried within the bound and one asking too long fails over at once;
fallback audio is cached under the fallback's key only; a tenant's order set through either
store chooses the engine. Breaker states are polled, never timed.
"""

from __future__ import annotations

import argparse
import time

import pytest
from pydantic import SecretStr

from handlers.prepare import SpeechRequest, prepare, prepare_fallback
from serverless_tts.runpod_shapes import run_job
from serverless_tts.tenant_admin import add_tenant_commands
from shared.config import Settings
from shared.engines.failover import CLOSED, HALF_OPEN, OPEN, CircuitOpen
from shared.errors import EngineUnavailable, ErrorCode, InvalidInput, TTSError
from shared.jobs import SynthesizeJob, parse_job
from shared.tenants.base import UNLIMITED, TenantStore
from shared.worker import build_worker
from tests.handlers.failover_rig import (
    KEY,
    TEXT,
    Rig,
    breaker_gauge,
    key_for,
    speak,
    wait_for_state,
)
from tests.shared.conftest import any_store  # noqa: F401  (each tenant store in turn)
from tests.worker_fixtures import usage_rows


def test_a_failing_primary_hands_the_job_to_the_fallback_and_says_why(rig: Rig) -> None:
    ctx = rig.worker("piper")
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    item = speak(ctx, key, voice=f"builtin:{rig.flaky.default_voice}")
    assert item["engine"] == "openai"
    assert item["fallback_reason"] == (
        f"piper: engine_unavailable; openai has no voice builtin:{rig.flaky.default_voice}:"
        " spoke builtin:alloy"
    )
    assert item["voice"] == "builtin:alloy"
    assert rig.flaky.calls == 1  # not a vendor error: no retry of the primary
    assert len(rig.server.requests) == 1
    [row] = usage_rows(ctx)
    assert (row["engine"], row["fallback_reason"]) == ("openai", item["fallback_reason"])
    assert row["voice"] == "builtin:alloy" and row["error_code"] is None
    fallbacks = 'tts_engine_fallbacks_total{from_engine="piper",to_engine="openai",'
    assert ctx.metrics.snapshot()[f'{fallbacks}cause="engine_unavailable"}}'] == 1


def test_a_healthy_primary_answers_with_no_fallback_reason(rig: Rig) -> None:
    ctx = rig.worker("piper")
    item = speak(ctx, key_for(ctx))
    assert item["engine"] == "piper" and "fallback_reason" not in item
    [row] = usage_rows(ctx)
    assert (row["engine"], row["fallback_reason"]) == ("piper", None)


def test_the_breaker_opens_skips_the_primary_then_one_probe_closes_it(rig: Rig) -> None:
    ctx = rig.worker("piper")
    key = key_for(ctx)
    assert ctx.engines.guard("piper").state == CLOSED and breaker_gauge(ctx, "piper") == 0
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    for _ in range(2):  # the threshold
        assert speak(ctx, key)["engine"] == "openai"
    assert rig.flaky.calls == 2
    assert ctx.engines.guard("piper").state == OPEN and breaker_gauge(ctx, "piper") == 2
    # While open the primary is not called at all.
    skipped = speak(ctx, key)
    assert skipped["engine"] == "openai"
    assert skipped["fallback_reason"] == "piper: circuit_open"
    assert rig.flaky.calls == 2
    # Recovered; once the open time is over, the next job probes it and closes the breaker.
    rig.flaky.failing = None
    wait_for_state(ctx, "piper", HALF_OPEN)
    probe = speak(ctx, key)
    assert (probe["engine"], probe.get("fallback_reason")) == ("piper", None)
    assert rig.flaky.calls == 3
    assert ctx.engines.guard("piper").state == CLOSED and breaker_gauge(ctx, "piper") == 0
    assert speak(ctx, key)["engine"] == "piper" and rig.flaky.calls == 4
    assert len(rig.server.requests) == 3
    engines = [row["engine"] for row in usage_rows(ctx)]
    assert engines == ["openai", "openai", "openai", "piper", "piper"]


def test_a_failed_probe_opens_the_breaker_again(rig: Rig) -> None:
    ctx = rig.worker("piper")
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    speak(ctx, key), speak(ctx, key)
    wait_for_state(ctx, "piper", HALF_OPEN)
    assert speak(ctx, key)["fallback_reason"] == "piper: engine_unavailable"
    assert rig.flaky.calls == 3  # the one probe
    assert ctx.engines.guard("piper").state == OPEN
    assert speak(ctx, key)["fallback_reason"] == "piper: circuit_open" and rig.flaky.calls == 3


def test_a_401_is_tried_once_then_fails_over(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    rig.server.answer(rig.server.error_reply(401, "invalid_api_key", "Incorrect API key provided"))
    item = speak(ctx, key_for(ctx))
    assert len(rig.server.requests) == 1
    assert (item["engine"], item["fallback_reason"]) == ("piper", "openai: auth")


def test_a_503_with_retry_after_is_retried_within_the_bound(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    busy = rig.server.error_reply(503, "server_busy", "overloaded", {"Retry-After": "0.05"})
    rig.server.answer(busy, busy)
    item = speak(ctx, key_for(ctx))
    assert (item["engine"], item.get("fallback_reason")) == ("openai", None)
    assert len(rig.server.requests) == 3 and rig.flaky.calls == 0


def test_retries_stop_at_the_bound_then_fail_over(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    busy = rig.server.error_reply(503, "server_busy", "overloaded", {"Retry-After": "0"})
    rig.server.answer(busy, busy, busy, busy)
    item = speak(ctx, key_for(ctx))
    assert len(rig.server.requests) == 3  # retry_attempts
    assert (item["engine"], item["fallback_reason"]) == ("piper", "openai: overloaded")


def test_a_retry_after_longer_than_the_bound_fails_over_at_once(rig: Rig) -> None:
    ctx = rig.worker("openai", breaker_failures=10)
    rig.server.answer(
        rig.server.error_reply(429, "rate_limit_exceeded", "slow down", {"Retry-After": "60"})
    )
    item = speak(ctx, key_for(ctx))
    assert len(rig.server.requests) == 1
    assert (item["engine"], item["fallback_reason"]) == ("piper", "openai: rate_limited")


def test_with_no_engine_left_the_job_fails_as_engine_unavailable(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=10)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    rig.server.answer(rig.server.error_reply(401, "invalid_api_key", "Incorrect API key provided"))
    with pytest.raises(TTSError) as caught:
        run_job({"api_key": key_for(ctx), "text": TEXT, "delivery": "base64"}, ctx)
    assert caught.value.code is ErrorCode.ENGINE_UNAVAILABLE
    [row] = usage_rows(ctx)
    assert row["error_code"] == "engine_unavailable"


def test_the_callers_own_mistakes_never_fail_over(rig: Rig) -> None:
    ctx = rig.worker("piper")
    key = key_for(ctx)
    for fields, code in (
        ({"voice": "builtin:nobody"}, ErrorCode.VOICE_NOT_FOUND),
        ({"language": "xx"}, ErrorCode.UNSUPPORTED_LANGUAGE),
    ):
        with pytest.raises(TTSError) as caught:
            run_job({"api_key": key, "text": TEXT, **fields}, ctx)
        assert caught.value.code in (code, ErrorCode.INVALID_INPUT)
    assert rig.flaky.calls == 0 and not rig.server.requests


def test_fallback_audio_is_cached_under_its_own_engines_key(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_failures=10)
    key = key_for(ctx)
    job = {"api_key": key, "text": TEXT, "delivery": "url"}
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    [first] = run_job(job, ctx)
    assert (first["engine"], first["cached"]) == ("openai", False)
    # Where each engine's copy lives: the fallback's holds the audio, the primary's nothing.
    tenant = ctx.tenants.authenticate(key)
    parsed = parse_job({"text": TEXT, "delivery": "url"}, ctx.limits)
    assert isinstance(parsed, SynthesizeJob)
    request = SpeechRequest.of(parsed)
    primary = prepare(request, ctx, tenant=tenant, request_id="slots")
    fallback = prepare_fallback(primary, ctx, CircuitOpen("for the key"))
    assert primary.cache_slot is not None and fallback is not None
    assert fallback.cache_slot is not None
    assert fallback.cache_slot.audio_key != primary.cache_slot.audio_key
    assert ctx.storage.get(fallback.cache_slot.audio_key) is not None
    assert ctx.storage.get(primary.cache_slot.audio_key) is None
    # The primary still failing: the fallback's copy answers, no vendor call.
    [second] = run_job({**job, "request_id": "again"}, ctx)
    assert (second["engine"], second["cached"]) == ("openai", True)
    assert len(rig.server.requests) == 1
    # The primary healthy again: a miss under its own key, spoken by it.
    rig.flaky.failing = None
    [third] = run_job({**job, "request_id": "healthy"}, ctx)
    assert (third["engine"], third["cached"], third.get("fallback_reason")) == (
        "piper",
        False,
        None,
    )
    assert ctx.storage.get(primary.cache_slot.audio_key) is not None
    assert ctx.metrics.snapshot()['tts_cache_lookups_total{engine="piper",result="miss"}'] >= 2


def test_a_stream_skips_a_primary_whose_breaker_is_open(rig: Rig) -> None:
    ctx = rig.worker("piper", breaker_open_s=600)  # open for the whole test
    key = key_for(ctx)
    rig.flaky.failing = EngineUnavailable("the GPU is gone")
    speak(ctx, key), speak(ctx, key)
    items = run_job({"api_key": key, "text": TEXT, "delivery": "stream", "format": "pcm16"}, ctx)
    assert items[-1]["final"] and items[-1]["engine"] == "openai"
    assert rig.flaky.calls == 2
    rows = usage_rows(ctx)
    assert (rows[-1]["engine"], rows[-1]["fallback_reason"]) == ("openai", "piper: circuit_open")


def test_a_tenants_engine_order_set_through_the_store_chooses_the_engine(
    any_store: TenantStore,  # noqa: F811  the fixture imported above
    rig: Rig,
) -> None:
    ctx = rig.worker("piper", tenants=any_store)
    issued = any_store.create_tenant(f"order-{time.monotonic_ns()}", UNLIMITED)
    assert issued.tenant.engine_order is None
    assert speak(ctx, issued.api_key)["engine"] == "piper"
    tenant = any_store.set_engine_order(issued.tenant.id, ["openai", "piper"])
    assert tenant.engine_order == ("openai", "piper")
    assert any_store.get_tenant(issued.tenant.id).engine_order == ("openai", "piper")
    assert speak(ctx, issued.api_key)["engine"] == "openai"
    # Only engines this worker loaded are tried; none loaded means the worker's own order.
    any_store.set_engine_order(issued.tenant.id, ["deepgram"])
    assert speak(ctx, issued.api_key)["engine"] == "piper"
    cleared = any_store.set_engine_order(issued.tenant.id, None)
    assert cleared.engine_order is None
    with pytest.raises(InvalidInput):
        any_store.set_engine_order(issued.tenant.id, ["openai", "openai"])
    with pytest.raises(InvalidInput):
        any_store.set_engine_order(issued.tenant.id, ["Not An Engine"])


def test_tts_engines_lists_the_engines_to_load_default_first(
    settings: Settings,
) -> None:
    assert settings.engine_names == ["piper"]  # TTS_ENGINE alone
    several = settings.model_copy(update={"engines": "piper, openai"})
    assert several.engine_names == ["piper", "openai"]
    with pytest.raises(ValueError):
        Settings(engines="piper;openai")


def test_the_admin_cli_sets_and_clears_a_tenants_engine_order(
    rig: Rig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = rig.worker("piper")
    tenant_id = ctx.tenants.create_tenant("acme", UNLIMITED).tenant.id
    parser = argparse.ArgumentParser()
    add_tenant_commands(parser.add_subparsers())

    def admin(*argv: str) -> str:
        args = parser.parse_args(["tenants", *argv])
        args.tenant_command(args, ctx.tenants)
        return capsys.readouterr().out

    assert "engines=openai,piper" in admin("set-engines", tenant_id, "--order", "openai,piper")
    assert ctx.tenants.get_tenant(tenant_id).engine_order == ("openai", "piper")
    assert "engines=worker" in admin("set-engines", tenant_id, "--worker-order")
    assert ctx.tenants.get_tenant(tenant_id).engine_order is None


def test_a_worker_loads_every_engine_of_tts_engines_the_first_its_default(
    settings: Settings, rig: Rig
) -> None:
    configured = settings.model_copy(
        update={
            "engines": "piper,openai",
            "openai_api_key": SecretStr(KEY),
            "openai_speech_base_url": rig.server.base_url,
        }
    )
    ctx = build_worker(configured)
    try:
        assert ctx.engines.names == ["piper", "openai"]
        assert ctx.engines.default.engine.name == "piper"
        assert ctx.engines.order(None) == ["piper", "openai"]
        assert speak(ctx, key_for(ctx))["engine"] == "piper"
    finally:
        ctx.close()
