"""What the HTTP app adds to a job, and how soon streamed speech starts over HTTP.

1. Overhead per request: the same job through the dispatcher directly (the baseline, in this
   process) and through each HTTP surface on loopback (uvicorn in a thread, one keep-alive
   client), with synthesis taken out by replaying audio Piper made once (bench.job_overhead's
   ReplayEngine). The difference is routing, JSON, auth header parsing and the HTTP round trip.
2. Time to first byte of ``POST /v1/audio/speech`` with ``stream_format: audio``, with real
   Piper and with the tiny random-weight XTTS (CPU; its timings say nothing about real XTTS-v2
   on a GPU), against the same engine's first chunk through the dispatcher in this process.

Run: ``python -m bench.http_api [--requests N] [--streams N] [--no-xtts]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.job_overhead import PHRASE, ReplayEngine, percentiles
from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.piper import PiperEngine
from shared.jobs import ApiKeyCredentials
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.servers import free_port, wait_for_port

STREAM_TEXT = (
    "Thanks for calling Acme. Your order shipped this morning and should arrive on Thursday. "
    "Is there anything else I can help you with today?"
)


@contextmanager
def served(ctx: WorkerContext) -> Iterator[httpx.Client]:
    port = free_port()
    config = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def timed(call: Callable[[], object], runs: int) -> list[float]:
    call()  # warm: the auth cache, the route, the connection
    times = []
    for _ in range(runs):
        mark = time.perf_counter()
        call()
        times.append((time.perf_counter() - mark) * 1000)
    return times


def overhead(piper: PiperEngine, runs: int) -> None:
    pcm = piper.synthesize(PHRASE, voice=piper.voice(piper.default_voice), language="en", speed=1)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), engine="piper", auth_cache_ttl_s=300)
        ctx = build_worker(settings, engine=ReplayEngine(piper, pcm))
        key = ctx.tenants.create_tenant("bench", UNLIMITED).api_key
        job = {"text": PHRASE, "format": "wav", "cache": False}
        credentials = ApiKeyCredentials.of(key)
        bearer = {"Authorization": f"Bearer {key}"}
        with served(ctx) as http:

            def v1() -> None:
                http.post("/v1/synthesize", json=job, headers=bearer).raise_for_status()

            def openai() -> None:
                body = {"model": "tts-1", "voice": "alloy", "input": PHRASE}
                http.post(
                    "/v1/audio/speech", json={**body, "response_format": "wav"}, headers=bearer
                ).raise_for_status()

            def runsync() -> None:
                body = {"input": {**job, "api_key": key, "delivery": "base64"}}
                reply = http.post("/runsync", json=body)
                assert reply.json()["status"] == "COMPLETED"

            cases: dict[str, Callable[[], object]] = {
                "dispatcher, direct (baseline)": lambda: dispatch(
                    {**job, "delivery": "base64"}, credentials, ctx
                ),
                "POST /v1/synthesize": v1,
                "POST /v1/audio/speech (wav)": openai,
                "POST /runsync (base64)": runsync,
            }
            print(f"\nper request, {runs} requests each, synthesis replayed ({len(PHRASE)} chars)")
            baseline = None
            for label, call in cases.items():
                times = timed(call, runs)
                p50 = statistics.median(times)
                baseline = baseline or p50
                extra = f"   +{p50 - baseline:6.3f} ms over direct" if baseline != p50 else ""
                print(f"  {label:<31} {percentiles(times)}{extra}")
        ctx.close()


def first_chunk_direct(ctx: WorkerContext, key: str) -> tuple[float, float]:
    job = {"text": STREAM_TEXT, "format": "mp3", "delivery": "stream", "cache": False}
    mark = time.perf_counter()
    stream = dispatch(job, ApiKeyCredentials.of(key), ctx)
    assert isinstance(stream, AudioStream)
    first = None
    for chunk in stream:
        if first is None and chunk.data:
            first = time.perf_counter() - mark
    return (first or 0.0) * 1000, (time.perf_counter() - mark) * 1000


def first_byte_http(http: httpx.Client, key: str) -> tuple[float, float]:
    body = {"model": "tts-1", "voice": "alloy", "input": STREAM_TEXT, "response_format": "mp3"}
    headers = {"Authorization": f"Bearer {key}"}
    mark = time.perf_counter()
    first = None
    with http.stream("POST", "/v1/audio/speech", json=body, headers=headers) as reply:
        reply.raise_for_status()
        for data in reply.iter_raw():
            if first is None and data:
                first = time.perf_counter() - mark
    return (first or 0.0) * 1000, (time.perf_counter() - mark) * 1000


def time_to_first_byte(label: str, engine: Engine, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), auth_cache_ttl_s=300)
        ctx = build_worker(settings, engine=engine)
        key = ctx.tenants.create_tenant("bench", UNLIMITED).api_key
        with served(ctx) as http:
            results: dict[str, list[tuple[float, float]]] = {"direct": [], "http": []}
            first_chunk_direct(ctx, key)
            first_byte_http(http, key)  # warm both paths
            for _ in range(runs):  # interleaved, so drift hits both alike
                results["direct"].append(first_chunk_direct(ctx, key))
                results["http"].append(first_byte_http(http, key))
        ctx.engines.close()
        ctx.usage.close()
        ctx.tenants.close()
    direct_first = statistics.median(first for first, _ in results["direct"])
    print(f"\n{label}: time to first audio, {runs} runs, {len(STREAM_TEXT)} chars, mp3")
    for name, pairs in results.items():
        first = statistics.median(one for one, _ in pairs)
        total = statistics.median(whole for _, whole in pairs)
        ratio = first / direct_first
        print(f"  {name:<6} first {first:8.1f} ms   whole {total:8.1f} ms   {ratio:5.2f}x direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--no-xtts", action="store_true")
    args = parser.parse_args()

    piper = PiperEngine.load()
    overhead(piper, args.requests)
    time_to_first_byte("Piper (CPU)", piper, args.streams)
    if not args.no_xtts:
        xtts = tiny_xtts()
        time_to_first_byte("tiny XTTS (CPU, random weights)", xtts, args.streams)


def tiny_xtts() -> Engine:
    from shared.engines.xtts import XttsEngine
    from tests.xtts_checkpoint import build_tiny_xtts_checkpoint

    directory = Path(tempfile.mkdtemp(prefix="bench-xtts-"))
    options: dict[str, Any] = {"device": "cpu", "max_audio_tokens": 64, "stream_chunk_tokens": 8}
    return XttsEngine.load(build_tiny_xtts_checkpoint(directory), **options)


if __name__ == "__main__":
    main()
