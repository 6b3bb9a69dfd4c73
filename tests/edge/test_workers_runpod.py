"""``RunPodWorker`` against this product's RunPod-compatible routes (the same job shapes as a
RunPod endpoint running our worker), and, for what only RunPod's cloud does (``?wait=`` ending
before the job, ``/cancel``, its own key, its statuses), against a local server speaking
RunPod's documented shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from edge.workers.base import WorkerError
from edge.workers.build import build_worker_client
from edge.workers.runpod import RunPodWorker
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.edge.test_workers_http import assert_whole_mulaw
from tests.edge.worker_fixtures import CountingTransport, edge_settings, speech
from tests.entrypoints.web_helpers import Served, Start, serve
from tests.servers import free_port
from tests.shared.http_receiver import receiver

pytestmark = pytest.mark.anyio
RUNPOD_KEY = "rp_test-runpod-key"
ENDPOINT = "/v2/ep-test"
AUDIO_URL = "https://bucket.example/audio/1.mp3"


def runpod_worker(base: str, **options: Any) -> RunPodWorker:
    options.setdefault("timeout_s", 60)
    options.setdefault("retries", 1)
    options.setdefault("poll_interval_s", 0.01)
    return RunPodWorker(base, api_key=SecretStr(RUNPOD_KEY), **options)


# --- against this product's RunPod-compatible routes ---------------------------------------


@pytest.fixture
def local(start: Start) -> Served:
    return start(webhook_allow_loopback=True)  # the app calls a loopback webhook


@pytest.fixture
async def worker(local: Served) -> AsyncIterator[RunPodWorker]:
    client = runpod_worker(str(local.http.base_url))
    yield client
    await client.aclose()


async def test_warm_is_queued_with_the_webhook_and_the_greeting_is_then_cached(
    local: Served,
) -> None:
    key = local.new_key()
    greeting = speech(key, "Welcome to Acme, how can we help?")
    with receiver() as hook:
        worker = runpod_worker(
            str(local.http.base_url), webhook_url=f"http://127.0.0.1:{hook.port}/warmed"
        )
        assert await worker.cached_url(greeting) is None
        await worker.warm(greeting)  # returns once queued
        [ended] = hook.wait_for(1)
        url = await worker.cached_url(greeting)
        await worker.aclose()
    assert ended.path == "/warmed" and ended.json()["status"] == "COMPLETED"
    warmed = ended.json()["output"][0]["greetings"][0]["url"]
    assert url is not None and url.split("?")[0] == warmed.split("?")[0]  # freshly signed
    audio = local.http.get(url)
    assert audio.headers["content-type"] == "audio/mpeg"
    assert audio_stream(ffprobe_json(audio.content, "mp3"))["codec_name"] == "mp3"


async def test_runsync_gives_a_url_that_serves_the_audio(
    worker: RunPodWorker, local: Served
) -> None:
    url = await worker.synthesize_url(speech(local.new_key(), "Your order has shipped.", "wav"))
    audio = local.http.get(url)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert probe_duration_s(ffprobe_json(audio.content, "wav")) > 0.5


async def test_stream_polls_the_job_into_raw_mulaw(worker: RunPodWorker, local: Served) -> None:
    text = "Streaming through the queue. One poll at a time."
    stream = worker.stream(speech(local.new_key(), text, "mulaw"))
    assert_whole_mulaw([chunk async for chunk in stream], local)


async def test_a_wrong_tenant_key_is_refused_by_runsync_and_run(worker: RunPodWorker) -> None:
    wrong = speech("tts_wrong-tenant-key", "Nobody may say this.")
    for call in (worker.cached_url, worker.synthesize_url, worker.warm):
        with pytest.raises(WorkerError) as refused:
            await call(wrong)
        assert refused.value.reason == "refused" and "unauthorized" in refused.value.message
        assert "wrong-tenant-key" not in str(refused.value)


async def test_the_built_client_carries_the_runpod_key_and_the_configured_webhook(
    fake: Fake,
) -> None:
    fake.script["POST /runsync"] = [completed({"url": AUDIO_URL})]
    fake.script["POST /run"] = [status("IN_QUEUE", "job-3")]
    worker = (
        f'kind = "runpod"\nurl = "{fake.base}"\napi_key_env = "RUNPOD_API_KEY"\n'
        'webhook_url = "https://ops.example.com/runpod"'
    )
    client = build_worker_client(edge_settings(worker, RUNPOD_API_KEY=RUNPOD_KEY))
    assert isinstance(client, RunPodWorker)
    assert await client.synthesize_url(speech("tts_tenant", "Hi.")) == AUDIO_URL
    await client.warm(speech("tts_tenant", "Thanks for calling."))
    await client.aclose()
    runsync, run = fake.calls
    assert runsync.authorization == run.authorization == f"Bearer {RUNPOD_KEY}"
    assert run.body["webhook"] == "https://ops.example.com/runpod"


# --- against a local server speaking RunPod's cloud shapes ----------------------------------


@dataclass
class Reply:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    route: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class Fake:
    """RunPod's job API under ``/v2/{endpoint}``: each route (``"POST /runsync"``) answers its
    scripted replies in order, then repeats the last; every request is recorded. Like RunPod,
    it answers 401 to a wrong key and 400 to a job without ``input``."""

    base: str = ""
    script: dict[str, list[Reply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def routes(self) -> list[str]:
        return [call.route for call in self.calls]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/v2/{endpoint}/{rest:path}", methods=["GET", "POST"])
        async def job_api(endpoint: str, rest: str, request: Request) -> JSONResponse:
            raw = await request.body()
            body = await request.json() if raw else None
            route = f"{request.method} /{rest}"
            self.calls.append(
                Call(route, dict(request.query_params), body, request.headers.get("authorization"))
            )
            if request.headers.get("authorization") != f"Bearer {RUNPOD_KEY}":
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            if route in ("POST /run", "POST /runsync") and not isinstance(
                (body or {}).get("input"), dict
            ):
                return JSONResponse({"error": "input is required"}, status_code=400)
            replies = self.script.get(route)
            if not replies:
                return JSONResponse({"error": "not found"}, status_code=404)
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

        return app


def completed(result: dict[str, Any], job_id: str = "job-1") -> Reply:
    return Reply({"id": job_id, "status": "COMPLETED", "output": [result]})


def status(state: str, job_id: str = "job-1", **extra: Any) -> Reply:
    return Reply({"id": job_id, "status": state, **extra})


@pytest.fixture
def fake(stack: ExitStack) -> Iterator[Fake]:
    state = Fake()
    port = free_port()
    stack.enter_context(serve(state.app(), port))
    state.base = f"http://127.0.0.1:{port}{ENDPOINT}"
    yield state


async def test_runsync_that_answers_before_the_job_ends_is_polled_on_status(fake: Fake) -> None:
    fake.script["POST /runsync"] = [status("IN_QUEUE")]
    fake.script["GET /status/job-1"] = [status("IN_PROGRESS"), completed({"url": AUDIO_URL})]
    worker = runpod_worker(fake.base, timeout_s=20)
    assert await worker.synthesize_url(speech("tts_tenant", "Hold on.")) == AUDIO_URL
    await worker.aclose()
    assert fake.routes() == ["POST /runsync", "GET /status/job-1", "GET /status/job-1"]
    runsync = fake.calls[0]
    assert 1_000 <= int(runsync.query["wait"]) <= 20_000  # RunPod holds it no longer than us
    job = runsync.body["input"]
    assert job["api_key"] == "tts_tenant" and job["delivery"] == "url"
    assert job["text"] == "Hold on." and "webhook" not in runsync.body


async def test_a_job_that_does_not_end_within_timeout_s_times_out(fake: Fake) -> None:
    fake.script["POST /runsync"] = [status("IN_PROGRESS")]
    fake.script["GET /status/job-1"] = [status("IN_PROGRESS")]
    worker = runpod_worker(fake.base, timeout_s=1)
    with pytest.raises(WorkerError) as slow:
        await worker.synthesize_url(speech("tts_tenant", "Never done."))
    await worker.aclose()
    assert slow.value.reason == "timeout"
    assert "POST /cancel/job-1" not in fake.routes()  # left to finish: it lands in the cache


async def test_warm_queues_with_the_webhook_and_never_waits_for_the_job(fake: Fake) -> None:
    fake.script["POST /run"] = [status("IN_QUEUE", "job-9")]
    worker = runpod_worker(fake.base, webhook_url="https://edge.example.com/runpod/done")
    await worker.warm(speech("tts_tenant", "Thanks for calling."))
    await worker.aclose()
    [run] = fake.calls
    assert (
        run.route == "POST /run" and run.body["webhook"] == "https://edge.example.com/runpod/done"
    )
    assert run.body["input"]["action"] == "greetings.warm"
    assert run.body["input"]["phrases"] == ["Thanks for calling."]


async def test_closing_a_stream_early_cancels_the_job(fake: Fake) -> None:
    chunk = {"output": {"seq": 0, "format": "mulaw", "audio_base64": "f39/fw=="}}
    fake.script["POST /run"] = [status("IN_QUEUE", "job-5")]
    fake.script["GET /stream/job-5"] = [status("IN_PROGRESS", "job-5", stream=[chunk])]
    fake.script["POST /cancel/job-5"] = [status("CANCELLED", "job-5")]
    worker = runpod_worker(fake.base, webhook_url="https://edge.example.com/runpod/done")
    stream = worker.stream(speech("tts_tenant", "A long reply.", "mulaw"))
    assert await anext(stream) == b"\x7f\x7f\x7f\x7f"
    assert await anext(stream) == b"\x7f\x7f\x7f\x7f"
    await stream.aclose()  # type: ignore[attr-defined]
    await worker.aclose()
    assert fake.routes()[-1] == "POST /cancel/job-5"
    run = fake.calls[0]
    assert run.body["input"]["delivery"] == "stream" and run.body["input"]["format"] == "mulaw"
    assert run.body["webhook"] == "https://edge.example.com/runpod/done"


async def test_a_stream_ends_at_completed_and_a_failed_one_raises(fake: Fake) -> None:
    def item(seq: int) -> dict[str, Any]:
        return {"output": {"seq": seq, "audio_base64": "AAEC"}}

    fake.script["POST /run"] = [status("IN_QUEUE", "ok"), status("IN_QUEUE", "bad")]
    fake.script["GET /stream/ok"] = [
        status("IN_PROGRESS", "ok", stream=[item(0)]),
        status("IN_PROGRESS", "ok", stream=[]),
        status("COMPLETED", "ok", stream=[item(1)]),
    ]
    fake.script["GET /stream/bad"] = [
        status("FAILED", "bad", stream=[], error="engine_unavailable: the GPU is gone")
    ]
    worker = runpod_worker(fake.base)
    chunks = [chunk async for chunk in worker.stream(speech("tts_tenant", "Two parts.", "mulaw"))]
    assert chunks == [b"\x00\x01\x02", b"\x00\x01\x02"]
    assert "POST /cancel/ok" not in fake.routes()  # it ended: nothing to cancel
    with pytest.raises(WorkerError) as failed:
        async for _ in worker.stream(speech("tts_tenant", "Doomed.", "mulaw")):
            pass
    await worker.aclose()
    assert failed.value.reason == "unavailable" and "engine_unavailable" in failed.value.message


@pytest.mark.parametrize(
    ("final", "reason"),
    [
        (status("FAILED", error="quota_exceeded: the month's quota is used"), "refused"),
        (status("FAILED", error='{"error_type": "RuntimeError"}'), "failed"),
        (status("TIMED_OUT"), "timeout"),
        (status("CANCELLED"), "failed"),
        (completed({"audio_base64": "AAAA"}), "failed"),  # storage failed: no URL to play
    ],
)
async def test_each_end_of_a_job_maps_to_its_reason(fake: Fake, final: Reply, reason: str) -> None:
    fake.script["POST /runsync"] = [final]
    worker = runpod_worker(fake.base)
    with pytest.raises(WorkerError) as ended:
        await worker.synthesize_url(speech("tts_tenant", "Which way did it end?"))
    await worker.aclose()
    assert ended.value.reason == reason


async def test_a_greeting_runpod_has_not_cached_is_none(fake: Fake) -> None:
    fake.script["POST /runsync"] = [status("FAILED", error="not_found: warm it first")]
    worker = runpod_worker(fake.base)
    assert await worker.cached_url(speech("tts_tenant", "Not warmed.")) is None
    await worker.aclose()
    assert fake.calls[0].body["input"]["action"] == "greetings.get"


async def test_a_wrong_runpod_key_is_refused_and_never_retried(fake: Fake) -> None:
    transport = CountingTransport()
    worker = RunPodWorker(
        fake.base, api_key=SecretStr("rp_wrong"), timeout_s=10, retries=3, transport=transport
    )
    with pytest.raises(WorkerError) as refused:
        await worker.synthesize_url(speech("tts_tenant", "Let me in."))
    await worker.aclose()
    assert refused.value.reason == "refused" and "401" in refused.value.message
    assert len(transport.attempts) == 1 and "rp_wrong" not in str(refused.value)


async def test_overload_is_retried_within_bounds_and_a_long_rate_window_is_not(
    fake: Fake,
) -> None:
    fake.script["POST /runsync"] = [
        Reply({"error": "busy"}, status=503),
        Reply({"error": "slow down"}, status=429, headers={"Retry-After": "0"}),
        completed({"url": AUDIO_URL}),
    ]
    transport = CountingTransport()
    worker = runpod_worker(fake.base, retries=2, transport=transport)
    assert await worker.synthesize_url(speech("tts_tenant", "Third time lucky.")) == AUDIO_URL
    assert len(transport.attempts) == 3
    fake.script["POST /runsync"] = [
        Reply({"error": "rate"}, status=429, headers={"Retry-After": "30"})
    ]
    with pytest.raises(WorkerError) as limited:
        await worker.synthesize_url(speech("tts_tenant", "Again."))
    assert limited.value.reason == "unavailable" and len(transport.attempts) == 4
    fake.script["POST /runsync"] = [Reply({"error": "busy"}, status=503)]
    with pytest.raises(WorkerError) as busy:
        await worker.synthesize_url(speech("tts_tenant", "And again."))
    await worker.aclose()
    assert busy.value.reason == "unavailable" and len(transport.attempts) == 7  # 1 + 2 retries


async def test_a_retry_that_cannot_fit_the_deadline_is_not_started(fake: Fake) -> None:
    fake.script["POST /runsync"] = [
        Reply({"error": "full"}, status=503, headers={"Retry-After": "60"})
    ]
    transport = CountingTransport()
    worker = runpod_worker(fake.base, timeout_s=5, retries=3, transport=transport)
    with anyio.fail_after(60):  # a hang guard: the answer is the 503, not a timeout
        with pytest.raises(WorkerError) as full:
            await worker.synthesize_url(speech("tts_tenant", "Queue is full."))
    await worker.aclose()
    assert full.value.reason == "unavailable" and len(transport.attempts) == 1
