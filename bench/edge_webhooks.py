"""How fast the telephony edge answers Twilio, on loopback.

The edge app (uvicorn in a thread) in front of this product's HTTP app with real Piper (another
uvicorn in a thread, reached through the real ``HttpWorker``), a local responder, and requests
signed as Twilio signs them, one keep-alive client:

1. Webhook answer time, p50/p95/p99, against the bare ``GET /health`` round trip on the same
   edge (the baseline: what HTTP on loopback costs by itself):
   - cached greeting: ``POST voice``, the greeting warmed, answered ``<Play>``;
   - fast worker, play mode: ``POST gather``, the reply already cached, and a new reply each
     time (Piper synthesizes it within the deadline);
   - deadline fallback: ``POST gather`` with the worker's engine held, answered ``<Say>`` when
     the deadline (1200 ms, the default) passes.
2. Media Streams: from Twilio's ``start`` to the first ``media`` frame, and to the ``mark``
   after the last (the whole reply), for a three-sentence reply synthesized fresh each time.

Run: ``python -m bench.edge_webhooks [--requests N] [--held N] [--streams N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from shared.engines.piper import PiperEngine
from tests.edge.edge_helpers import (
    Edge,
    business,
    call_params,
    edge_settings,
    responder_server,
    start_edge,
    start_product,
    turn_params,
    verbs,
)
from tests.edge.test_media_streams import Twilio
from tests.engine_wrappers import GatedEngine

GREETING = "Thanks for calling Acme. How can I help you today?"


def percentiles(times: list[float]) -> str:
    cuts = statistics.quantiles(times, n=100)
    return f"p50 {statistics.median(times):8.2f}   p95 {cuts[94]:8.2f}   p99 {cuts[98]:8.2f} ms"


def timed(call: Callable[[int], object], runs: int) -> list[float]:
    call(-1)  # warm: the connection, the route, the worker's auth cache
    times = []
    for n in range(runs):
        mark = time.perf_counter()
        call(n)
        times.append((time.perf_counter() - mark) * 1000)
    return times


def report(label: str, times: list[float], baseline: float | None) -> float:
    p50 = statistics.median(times)
    ratio = f"   {p50 / baseline:7.1f}x health" if baseline else ""
    print(f"  {label:<38} {percentiles(times)}{ratio}")
    return p50


def expect(edge: Edge, business_name: str, speech: str | None, shape: list[str]) -> None:
    if speech is None:
        root = edge.twiml(business_name, "voice", call_params())
    else:
        root = edge.twiml(business_name, "gather", turn_params(speech))
    assert verbs(root) == shape, (business_name, verbs(root))


def webhooks(piper: PiperEngine, stack: ExitStack, tmp: Path, runs: int, held_runs: int) -> None:
    product = start_product(stack, tmp / "worker", piper)
    responder = stack.enter_context(responder_server())
    businesses = {
        "acme": business(responder.url("text"), greeting=GREETING),
        "echo": business(responder.url("echo")),
    }
    edge = start_edge(
        stack, edge_settings(str(product.http.base_url), product.new_key(), businesses)
    )
    # Warm the greeting the way a first call does: said once, warmed in the background.
    expect(edge, "acme", None, ["Gather", "Gather/Say"])
    while len(edge.state.background):
        time.sleep(0.01)

    gated = GatedEngine(piper)
    held_product = start_product(stack, tmp / "held", gated)
    held = start_edge(
        stack,
        edge_settings(
            str(held_product.http.base_url),
            held_product.new_key(),
            {"acme": business(responder.url("echo"))},
        ),
    )
    stack.callback(gated.gate.set)  # whatever happens, the held syntheses finish

    print(f"\nwebhook answer time on loopback, {runs} requests each ({held_runs} held)")
    baseline = report(
        "GET /health (baseline)", timed(lambda _: edge.http.get("/health"), runs), None
    )
    cases: list[tuple[str, Callable[[int], object], int]] = [
        (
            "voice, cached greeting (<Play>)",
            lambda _: expect(edge, "acme", None, ["Gather", "Gather/Play"]),
            runs,
        ),
        (
            "gather, reply cached (<Play>)",
            lambda _: expect(edge, "acme", "Where is my order?", ["Gather", "Gather/Play"]),
            runs,
        ),
        (
            "gather, reply synthesized (<Play>)",
            lambda n: expect(edge, "echo", f"order number {n}", ["Gather", "Gather/Play"]),
            runs,
        ),
        (
            "gather, worker held: deadline (<Say>)",
            lambda n: expect(held, "acme", f"order number {n}", ["Gather", "Gather/Say"]),
            held_runs,
        ),
    ]
    for label, call, count in cases:
        p50 = report(label, timed(call, count), baseline)
    gated.gate.set()
    while len(held.state.background):  # the held syntheses finish before anything else is timed
        time.sleep(0.05)
    deadline_ms = held.state.settings.config.deadline_ms
    print(f"  the deadline fallback answers {p50 - deadline_ms:.1f} ms after its {deadline_ms} ms")


def streams(piper: PiperEngine, stack: ExitStack, tmp: Path, runs: int) -> None:
    product = start_product(stack, tmp / "streams", piper)
    responder = stack.enter_context(responder_server())
    edge = start_edge(
        stack,
        edge_settings(
            str(product.http.base_url),
            product.new_key(),
            {"shop": business(responder.url("stream"), mode="stream")},
        ),
    )
    first_ms, whole_ms, audio_s = [], [], 0.0
    for _ in range(runs + 1):  # the first warms
        twilio = Twilio(edge)
        mark = time.perf_counter()
        twilio.start()
        assert twilio.message()["event"] == "media"
        first = (time.perf_counter() - mark) * 1000
        frames, end = twilio.frames_until_not_media()
        whole = (time.perf_counter() - mark) * 1000
        assert end["event"] == "mark"
        twilio.send(end)
        assert twilio.close_code() == 1000
        first_ms.append(first)
        whole_ms.append(whole)
        audio_s = (len(frames) + 1) * 0.02
    first_ms, whole_ms = first_ms[1:], whole_ms[1:]
    print(f"\nMedia Streams, {runs} streams of a three-sentence reply ({audio_s:.1f} s of audio)")
    report("start -> first media frame", first_ms, None)
    report("start -> mark (whole reply sent)", whole_ms, None)
    ratio = statistics.median(first_ms) / statistics.median(whole_ms)
    print(f"  first frame at {ratio:.2f}x of the whole reply's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--held", type=int, default=20, help="deadline runs (1.2 s each)")
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    piper = PiperEngine.load()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        webhooks(piper, stack, Path(tmp), args.requests, args.held)
        streams(piper, stack, Path(tmp), args.streams)


if __name__ == "__main__":
    main()
