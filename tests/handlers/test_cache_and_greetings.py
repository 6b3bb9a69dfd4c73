"""The audio cache, greetings and storage failures, on real Piper with the local store and a real
S3-compatible server (moto over HTTP)."""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from handlers.prepare import SpeechRequest, prepare
from serverless_tts.runpod_shapes import run_job
from shared.engines.base import Engine
from shared.errors import ErrorCode, TTSError
from shared.jobs import SynthesizeJob, parse_job
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.audio_probe import audio_stream, ffprobe_json
from tests.engine_wrappers import GatedEngine
from tests.s3_server import MotoS3, s3_client_for

# The real Piper engine, counting how often it is asked to speak; a test may swap in a closed
# ``gate`` to hold it.
CountingEngine = GatedEngine


@pytest.fixture
def engine(piper_engine: Engine) -> CountingEngine:
    return GatedEngine(piper_engine, open_gate=True)


@pytest.fixture
def cache_worker(
    make_worker: Callable[[Engine], WorkerContext], engine: CountingEngine
) -> WorkerContext:
    return make_worker(engine)  # type: ignore[arg-type]


@pytest.fixture
def key(cache_worker: WorkerContext) -> str:
    return cache_worker.tenants.create_tenant("acme", UNLIMITED).api_key


def job(key: str, **fields: Any) -> dict[str, Any]:
    return {"api_key": key, "text": "Thanks for calling Acme.", **fields}


@pytest.mark.parametrize("delivery", ["url", "base64"])
def test_second_identical_job_is_cached_and_never_touches_the_engine(
    cache_worker: WorkerContext, engine: CountingEngine, key: str, delivery: str
) -> None:
    [first] = run_job(job(key, delivery=delivery), cache_worker)
    calls = engine.calls
    [second] = run_job(job(key, delivery=delivery, request_id="again"), cache_worker)
    assert (first["cached"], second["cached"]) == (False, True)
    assert engine.calls == calls and second["timings"]["synth_ms"] == 0
    assert second["bytes"] == first["bytes"] and second["duration_s"] == first["duration_s"]
    if delivery == "base64":
        assert second["audio_base64"] == first["audio_base64"]


def test_text_and_ssml_saying_the_same_share_one_entry(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    run_job(job(key, text="  Thanks   for calling Acme. "), cache_worker)
    calls = engine.calls
    ssml = "<speak>Thanks for calling <sub alias='Acme'>ACME</sub>.</speak>"
    [result] = run_job({"api_key": key, "ssml": ssml}, cache_worker)
    assert result["cached"] is True and engine.calls == calls


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Thanks for calling Globex."},
        {"speed": 1.25},
        {"format": "mp3"},
        {"sample_rate": 16000},
        {"ssml": "<speak>Thanks for calling Acme.<break time='300ms'/></speak>", "text": None},
    ],
)
def test_changing_a_key_field_misses(
    cache_worker: WorkerContext, engine: CountingEngine, key: str, change: dict[str, Any]
) -> None:
    run_job(job(key), cache_worker)
    calls = engine.calls
    changed = {k: v for k, v in job(key, **change).items() if v is not None}
    [result] = run_job(changed, cache_worker)
    assert result["cached"] is False and engine.calls > calls


def test_cache_false_bypasses_the_cache(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    run_job(job(key), cache_worker)
    calls = engine.calls
    [result] = run_job(job(key, cache=False), cache_worker)
    assert result["cached"] is False and engine.calls == calls + 1


def test_two_concurrent_identical_jobs_run_the_engine_once(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    engine.gate = threading.Event()
    results: list[dict[str, Any]] = []

    def one() -> None:
        results.extend(run_job(job(key, text="Only once, please."), cache_worker))

    tenant = cache_worker.tenants.authenticate(key)
    parsed = parse_job({"text": "Only once, please."}, cache_worker.limits)
    assert isinstance(parsed, SynthesizeJob)
    request = SpeechRequest.of(parsed)
    slot = prepare(request, cache_worker, tenant=tenant, request_id="probe").cache_slot
    assert slot is not None
    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    # Release the engine only once the second job is waiting on the first one's synthesis.
    while cache_worker.inflight.waiting(slot.audio_key) == 0:
        threading.Event().wait(0.01)
    engine.gate.set()
    for thread in threads:
        thread.join(timeout=60)
    assert engine.calls == 1
    assert sorted(result["cached"] for result in results) == [False, True]
    assert results[0]["url"].split("?")[0] == results[1]["url"].split("?")[0]


def test_cached_stream_replays_the_stored_file(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    [whole] = run_job(job(key, format="mp3", delivery="base64"), cache_worker)
    calls = engine.calls
    chunks = run_job(job(key, format="mp3", delivery="stream"), cache_worker)
    assert engine.calls == calls and chunks[-1]["cached"] is True
    streamed = b"".join(base64.b64decode(chunk["audio_base64"]) for chunk in chunks)
    assert streamed == base64.b64decode(whole["audio_base64"])
    assert cache_worker.usage.flush(timeout_s=10)
    db = sqlite3.connect(cache_worker.settings.sqlite_path)
    cached_flags = [row[0] for row in db.execute("SELECT cached FROM usage_logs ORDER BY id")]
    assert cached_flags == [0, 1]  # the replayed stream is billed as cached


def test_tenants_never_share_cache_entries(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    other = cache_worker.tenants.create_tenant("globex", UNLIMITED)
    [mine] = run_job(job(key), cache_worker)
    [theirs] = run_job(job(other.api_key), cache_worker)
    assert theirs["cached"] is False  # acme's entry does not answer globex
    assert f"/tts/{other.tenant.id}/" in theirs["url"]
    assert f"/tts/{other.tenant.id}/" not in mine["url"]


def test_greetings_warm_then_get_for_two_phrases(
    cache_worker: WorkerContext, engine: CountingEngine, key: str
) -> None:
    phrases = ["Thanks for calling Acme.", "Please hold while we connect you."]
    warm = {"action": "greetings.warm", "api_key": key, "phrases": phrases, "format": "mp3"}
    [warmed] = run_job(warm, cache_worker)
    assert [g["text"] for g in warmed["greetings"]] == phrases
    calls = engine.calls
    for phrase in phrases:
        get = {"action": "greetings.get", "api_key": key, "text": phrase, "format": "mp3"}
        [got] = run_job(get, cache_worker)
        assert got["cached"] is True and got["url"]
    assert engine.calls == calls
    [again] = run_job(warm, cache_worker)
    assert all(g["cached"] for g in again["greetings"]) and engine.calls == calls
    missing = {"action": "greetings.get", "api_key": key, "text": "Never warmed.", "format": "mp3"}
    with pytest.raises(TTSError) as refused:
        run_job(missing, cache_worker)
    assert refused.value.code == ErrorCode.NOT_FOUND


def test_greetings_get_is_tenant_scoped(cache_worker: WorkerContext, key: str) -> None:
    run_job({"action": "greetings.warm", "api_key": key, "phrases": ["Hello."]}, cache_worker)
    other = cache_worker.tenants.create_tenant("globex", UNLIMITED).api_key
    with pytest.raises(TTSError) as refused:
        run_job({"action": "greetings.get", "api_key": other, "text": "Hello."}, cache_worker)
    assert refused.value.code == ErrorCode.NOT_FOUND


def test_s3_url_job_serves_identical_bytes_with_the_content_type(
    make_worker: Callable[[Engine], WorkerContext],
    engine: CountingEngine,
    s3_store: S3AudioStore,
    settings: Any,
) -> None:
    worker = build_worker(settings, engine=engine, storage=s3_store)  # type: ignore[arg-type]
    try:
        key_ = worker.tenants.create_tenant("acme", UNLIMITED).api_key
        [result] = run_job(job(key_, format="mp3"), worker)
        fetched = httpx.get(result["url"], timeout=30)
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/mpeg"
        # Piper samples noise, so compare with what the store holds: the cached copy.
        [inline] = run_job(job(key_, format="mp3", delivery="base64"), worker)
        assert inline["cached"] is True
        assert fetched.content == base64.b64decode(inline["audio_base64"])
        assert len(fetched.content) == result["bytes"]
    finally:
        worker.close()


def test_storage_down_small_falls_back_to_base64_large_is_storage_unavailable(
    engine: CountingEngine, s3_outage: MotoS3, settings: Any
) -> None:
    client = s3_client_for(s3_outage.endpoint_url)
    client.create_bucket(Bucket="outage")
    store = S3AudioStore(client, bucket="outage", put_backoff_s=(0.0, 0.0))
    worker = build_worker(settings, engine=engine, storage=store)  # type: ignore[arg-type]
    try:
        key_ = worker.tenants.create_tenant("acme", UNLIMITED).api_key
        assert run_job(job(key_, format="mp3"), worker)[0]["delivery"] == "url"
        s3_outage.stop()
        [small] = run_job(job(key_, format="mp3", text="Storage is down."), worker)
        assert small["delivery"] == "base64" and "storage unavailable" in small["warning"]
        mp3 = base64.b64decode(small["audio_base64"])
        assert audio_stream(ffprobe_json(mp3, "mp3"))["codec_name"] == "mp3"
        roomy = worker.settings
        worker.settings = roomy.model_copy(update={"max_base64_bytes": 1000})
        with pytest.raises(TTSError) as refused:
            run_job(
                job(key_, format="wav", text="A longer sentence that makes a big file."), worker
            )
        assert refused.value.code == ErrorCode.STORAGE_UNAVAILABLE
        worker.settings = roomy
        [still] = run_job(job(key_, format="mp3", delivery="base64", text="Still here."), worker)
        assert still["bytes"] > 0
        s3_outage.start()
        [back] = run_job(job(key_, format="mp3", text="Storage is back."), worker)
        assert back["delivery"] == "url" and "warning" not in back
    finally:
        worker.close()
