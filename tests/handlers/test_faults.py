"""Fault injection through the real dispatcher and HTTP app on real Piper: each fault fails its
own job with a clear code and leaves the worker serving the next one, or, when the model can no
longer be trusted, says so on /health and asks RunPod for a fresh worker."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import torch
from runpod.serverless.modules import rp_job

from serverless_tts.runpod_refresh import refreshing
from serverless_tts.runpod_worker import runpod_config
from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines import device_faults
from shared.engines.base import Engine
from shared.errors import DeviceError, EngineOutOfMemory, EngineUnavailable
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.audio_probe import audio_stream, ffprobe_json
from tests.engine_wrappers import FaultyEngine, GatedEngine
from tests.entrypoints.web_helpers import Served, serve, start_app
from tests.s3_server import MotoS3, s3_client_for
from tests.served_process import until
from tests.servers import free_port
from tests.supabase_fixtures import on_supabase
from tests.supabase_stack import SupabaseStack
from tests.worker_fixtures import usage_rows

OOM = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.69 GiB total capacity)"
ILLEGAL_ACCESS = "CUDA error: an illegal memory access was encountered"
Start = Callable[..., Served]


@pytest.fixture
def start(settings: Settings) -> Iterator[Start]:
    with ExitStack() as stack:

        def started(engine: Engine, **changes: Any) -> Served:
            return start_app(stack, settings.model_copy(update=changes), engine)

        yield started


def _job(key: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"input": {"api_key": key, "text": text, "delivery": "base64", **fields}}


def _spoken(reply: httpx.Response) -> bytes:
    body = reply.json()
    assert body["status"] == "COMPLETED", body
    audio = base64.b64decode(body["output"][0]["audio_base64"])
    assert audio_stream(ffprobe_json(audio, ".wav"))["codec_name"] == "pcm_s16le"
    return audio


def _roomy(ctx: WorkerContext) -> None:
    """A timeout a real Piper step fits in on a loaded CPU (0.3 s does not always)."""
    ctx.engines.default.limit(step_timeout_s=120, hung_s=600)


def _failed(reply: httpx.Response) -> str:
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "FAILED", body
    return str(body["error"])


def _faulted(
    start: Start, piper_engine: Engine, fault: BaseException, text: str
) -> tuple[Served, str, str]:
    """A served worker whose engine raises ``fault`` on the first job, ``text``: the worker,
    its tenant's key and that job's error."""
    engine = FaultyEngine(piper_engine)
    served = start(engine)
    key = served.new_key()
    engine.fail_next(fault)
    return served, key, _failed(served.http.post("/runsync", json=_job(key, text)))


def test_cuda_out_of_memory_fails_its_job_and_the_worker_serves_on(
    start: Start, piper_engine: Engine
) -> None:
    fault = torch.cuda.OutOfMemoryError(OOM)
    served, key, error = _faulted(start, piper_engine, fault, "Too big for the card.")
    assert error.startswith("engine_out_of_memory: the engine ran out of device memory")
    assert served.http.get("/health").status_code == 200
    _spoken(served.http.post("/runsync", json=_job(key, "Small enough now.")))
    codes = [row["error_code"] for row in usage_rows(served.ctx)]
    assert codes == ["engine_out_of_memory", None]


def test_an_engine_raising_fails_only_its_job(start: Start, piper_engine: Engine) -> None:
    served, key, error = _faulted(
        start, piper_engine, ValueError("the model tripped"), "Trip here."
    )
    assert error.startswith("engine_unavailable:")
    assert served.http.get("/health").status_code == 200
    _spoken(served.http.post("/runsync", json=_job(key, "Walk on.")))


def test_a_device_error_makes_the_worker_unhealthy_and_refuses_the_engine(
    start: Start, piper_engine: Engine
) -> None:
    fault = RuntimeError(ILLEGAL_ACCESS)
    served, key, error = _faulted(start, piper_engine, fault, "Poison the context.")
    assert error.startswith("device_error: the engine's device failed (RuntimeError: CUDA error")
    health = served.http.get("/health")
    assert health.status_code == 503
    assert "must be replaced" in health.json()["error"]
    v1_health = served.http.get("/v1/health")
    assert v1_health.status_code == 503
    assert v1_health.json()["error"]["code"] == "engine_unavailable"
    # The model is not asked again: its state is not to be trusted.
    later = _failed(served.http.post("/runsync", json=_job(key, "Anyone home?")))
    assert later.startswith("device_error: the piper engine is out of service")


def _runpod_outcome(config: dict[str, Any], job: dict[str, Any]) -> Any:
    async def collect() -> Any:
        handler = config["handler"]
        if rp_job.is_generator(handler):
            return [item async for item in rp_job.run_job_generator(handler, job)]
        return await rp_job.run_job(handler, job)

    return asyncio.run(collect())


def _stream_error(items: list[dict[str, Any]]) -> str:
    """The error a streamed job ended with (run_job_generator wraps each item in output)."""
    return str(items[-1]["output"]["error"])


@pytest.mark.parametrize(
    "argv", [["--rp_serve_api"], ["--test_input", "{}"]], ids=["stream", "whole"]
)
def test_a_device_error_asks_runpod_for_a_fresh_worker(
    make_worker: Callable[[Engine], WorkerContext], piper_engine: Engine, argv: list[str]
) -> None:
    engine = FaultyEngine(piper_engine)
    worker = make_worker(engine)  # type: ignore[arg-type]
    key = worker.tenants.create_tenant("acme", UNLIMITED).api_key
    config = refreshing(runpod_config(worker, argv, {}), worker)
    healthy = _runpod_outcome(config, {"id": "ok", **_job(key, "All is well.")})
    last = healthy[-1]["output"] if isinstance(healthy, list) else healthy["output"][-1]
    assert last["bytes"] > 0 and not config.get("refresh_worker")

    engine.fail_next(RuntimeError("CUDA error: device-side assert triggered"))
    outcome = _runpod_outcome(config, {"id": "bad", **_job(key, "Assert on the device.")})
    assert config["refresh_worker"] is True  # what rp_job.handle_job turns into stopPod
    if isinstance(outcome, list):  # the streaming handler: its error item ends the job
        assert _stream_error(outcome).startswith("device_error:")
    else:  # the whole-result handler: RunPod's documented {"error", "refresh_worker"} shape
        assert outcome["error"].startswith("device_error:") and outcome["stopPod"] is True


def test_a_hung_engine_times_out_the_job_and_serves_the_next_once_it_returns(
    start: Start, piper_engine: Engine
) -> None:
    engine = GatedEngine(piper_engine)
    served = start(engine, engine_timeout_s=0.3)
    key = served.new_key()
    error = _failed(served.http.post("/runsync", json=_job(key, "Hang on the engine.")))
    assert error.startswith("engine_timeout: the piper engine's step ran past 0.3 s")
    stuck = served.http.get("/health")  # answered while the engine is still stuck
    assert stuck.status_code == 503 and "stuck on a step" in stuck.json()["error"]

    engine.gate.set()  # the engine returns; its render was cancelled and is closed now
    runner = served.ctx.engines.default
    until(lambda: runner.active == 0 and not runner.stalled, "the hung render ending")
    assert served.http.get("/health").status_code == 200
    _roomy(served.ctx)
    _spoken(served.http.post("/runsync", json=_job(key, "Back to work.")))


def test_an_engine_step_that_never_returns_gets_the_worker_replaced(
    make_worker: Callable[[Engine], WorkerContext],
    settings: Settings,
    piper_engine: Engine,
) -> None:
    engine = GatedEngine(piper_engine)
    worker = build_worker(
        settings.model_copy(update={"engine_timeout_s": 0.2, "engine_hung_s": 0.5}), engine=engine
    )
    try:
        key = worker.tenants.create_tenant("acme", UNLIMITED).api_key
        config = refreshing(runpod_config(worker, ["--rp_serve_api"], {}), worker)
        first = _runpod_outcome(config, {"id": "hung", **_job(key, "Never coming back.")})
        assert _stream_error(first).startswith("engine_timeout:")
        runner = worker.engines.default
        until(lambda: runner.fault is not None, "the step passing its hung bound")
        after = _runpod_outcome(config, {"id": "next", **_job(key, "Is it back?")})
        assert _stream_error(after).startswith("device_error: the piper engine is out of service")
        assert config["refresh_worker"] is True
    finally:
        engine.gate.set()
        worker.close()


def test_device_faults_are_read_through_the_engines_own_wrapping() -> None:
    """XTTS wraps torch's errors (``_inference_error``): the cause decides, not the wrapper."""
    for cause, expected in [
        (torch.cuda.OutOfMemoryError(OOM), EngineOutOfMemory),
        (RuntimeError("CUDA error: device-side assert triggered"), DeviceError),
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling cublasSgemm"), DeviceError),
    ]:
        wrapped = EngineUnavailable(f"XTTS inference failed: {cause}")
        wrapped.__cause__ = cause
        translated = device_faults.translate(wrapped)
        assert isinstance(translated, expected) and translated.__cause__ is wrapped
    plain = ValueError("not a device fault")
    assert device_faults.translate(plain) is plain


def test_storage_down_inlines_small_audio_refuses_large_and_base64_still_works(
    settings: Settings, piper_engine: Engine, s3_outage: MotoS3
) -> None:
    client = s3_client_for(s3_outage.endpoint_url)
    client.create_bucket(Bucket="faults")
    store = S3AudioStore(client, bucket="faults", put_backoff_s=(0.0,))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = build_worker(
        settings.model_copy(update={"public_base_url": base, "max_base64_bytes": 20_000}),
        engine=piper_engine,
        storage=store,
    )
    with ExitStack() as stack:
        stack.callback(worker.close)
        stack.enter_context(serve(create_app(worker), port))
        http = stack.enter_context(httpx.Client(base_url=base, timeout=120))
        bearer = {
            "Authorization": f"Bearer {worker.tenants.create_tenant('acme', UNLIMITED).api_key}"
        }
        speech = {"text": "Keep this short.", "format": "mp3"}
        assert "url" in http.post("/v1/synthesize-url", json=speech, headers=bearer).json()

        s3_outage.stop()
        small = http.post("/v1/synthesize-url", json=speech, headers=bearer).json()
        assert "storage unavailable" in small["warning"] and small["audio_base64"]
        large = {"text": "A much longer sentence, so that its wave file is big.", "format": "wav"}
        refused = http.post("/v1/synthesize-url", json=large, headers=bearer)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "storage_unavailable"
        inline = http.post("/v1/synthesize", json=speech, headers=bearer)
        assert inline.status_code == 200
        assert audio_stream(ffprobe_json(inline.content, ".mp3"))["codec_name"] == "mp3"

        s3_outage.start()
        client.create_bucket(Bucket="faults")  # moto keeps nothing across a restart
        back = http.post("/v1/synthesize-url", json=speech, headers=bearer).json()
        assert "url" in back and "warning" not in back


def test_database_down_serves_cached_keys_refuses_others_and_keeps_every_row(
    settings: Settings, piper_engine: Engine, supabase_stack: SupabaseStack
) -> None:
    on_db = on_supabase(settings, supabase_stack, auth_cache_ttl_s=30)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = build_worker(on_db.model_copy(update={"public_base_url": base}), engine=piper_engine)
    with ExitStack() as stack:
        stack.callback(worker.close)
        stack.enter_context(serve(create_app(worker), port))
        http = stack.enter_context(httpx.Client(base_url=base, timeout=120))
        known = worker.tenants.create_tenant("faults-known", UNLIMITED)
        stranger = worker.tenants.create_tenant("faults-stranger", UNLIMITED).api_key
        _spoken(http.post("/runsync", json=_job(known.api_key, "Warm my key.")))
        assert worker.usage.flush(timeout_s=10)

        supabase_stack.stop_postgres()
        try:
            _spoken(http.post("/runsync", json=_job(known.api_key, "Served from the cache.")))
            refused = http.post(
                "/v1/synthesize",
                json={"text": "Who?"},
                headers={"Authorization": f"Bearer {stranger}"},
            )
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "auth_unavailable"
            assert http.get("/health").status_code == 200
        finally:
            supabase_stack.start_postgres()
        _spoken(http.post("/runsync", json=_job(stranger, "Now I am known.")))
        assert worker.usage.flush(timeout_s=30) and worker.usage.dropped == 0
        counted = supabase_stack.psql(
            f"SELECT count(*) FROM usage_logs WHERE tenant_id = '{known.tenant.id}'"
        )
        assert counted.strip() == "2"


def test_a_job_queued_behind_a_hung_step_times_out_too(start: Start, piper_engine: Engine) -> None:
    """Every reader waiting on the stuck engine stops at the timeout, not only the first."""
    engine = GatedEngine(piper_engine)
    served = start(engine, engine_timeout_s=0.3)
    key = served.new_key()
    replies: list[httpx.Response] = []

    def post(text: str) -> None:
        replies.append(served.http.post("/runsync", json=_job(key, text)))

    first = threading.Thread(target=post, args=("First in.",))
    first.start()
    assert engine.entered.wait(timeout=30)
    second = threading.Thread(target=post, args=("Second in.",))
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert sorted(_failed(reply).split(":")[0] for reply in replies) == ["engine_timeout"] * 2
    engine.gate.set()
    until(lambda: served.ctx.engines.default.active == 0, "the hung renders ending")
    _roomy(served.ctx)
    _spoken(served.http.post("/runsync", json=_job(key, "Third, after.")))
