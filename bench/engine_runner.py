"""The engine's own thread: what the hand-off costs, and what a slow stream reader costs others.

1. Hand-off: a stream read straight from Piper's generator (the baseline) against the same text
   rendered on the engine runner and read from its queue: first chunk and total.
2. A slow reader: job B (one sentence, whole) alone on an idle engine (the baseline), then while
   job A streams 12 sentences to a reader that sleeps 0.3 s per chunk, like a phone line. Before
   the runner, A's reader held the engine lock for its whole stream, so B waited for all of it;
   that wait is printed too (A's reader-paced duration).

Run: ``python -m bench.engine_runner``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

from shared.engines.base import Engine
from shared.engines.piper import PiperEngine
from shared.engines.render_stream import Step
from shared.engines.runner import EngineRunner

TEXT = (
    "The weather is lovely in the park this morning. "
    "Children are playing football on the grass near the lake. "
    "Later we will walk to the old bakery for fresh bread."
)
READER_SLEEP_S = 0.3


def steps(engine: Engine, text: str) -> Iterator[Step]:
    voice = engine.voice(engine.default_voice)
    for pcm in engine.stream(text, voice=voice, language="en", speed=1.0):
        yield Step(pcm, boundary=False)
    yield Step(None, last=True)


def timed(chunks: Iterator[object]) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    for _ in chunks:
        if first is None:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def hand_off(engine: PiperEngine, runner: EngineRunner, runs: int) -> None:
    voice = engine.voice(engine.default_voice)
    direct = [
        timed(engine.stream(TEXT, voice=voice, language="en", speed=1.0)) for _ in range(runs)
    ]
    queued = [timed(runner.submit(steps(engine, TEXT))) for _ in range(runs)]
    for label, runs_ in (("direct (baseline)", direct), ("engine runner    ", queued)):
        first = statistics.median(r[0] for r in runs_)
        total = statistics.median(r[1] for r in runs_)
        print(f"  {label}: first chunk {first * 1000:7.1f} ms   total {total * 1000:7.1f} ms")
    ratio = statistics.median(r[1] for r in queued) / statistics.median(r[1] for r in direct)
    print(f"  runner total / direct total = {ratio:.3f}x")


def whole(engine: Engine, text: str) -> Iterator[Step]:
    """A whole-file job's one step (what handlers/render.py makes of a one-sentence job)."""
    voice = engine.voice(engine.default_voice)
    yield Step(engine.synthesize(text, voice=voice, language="en", speed=1.0), last=True)


def job_b(runner: EngineRunner, engine: Engine) -> float:
    started = time.perf_counter()
    for _ in runner.submit(whole(engine, "Bravo speaks now.")):
        pass
    return time.perf_counter() - started


def slow_reader(runner: EngineRunner, engine: Engine, runs: int) -> None:
    alone = [job_b(runner, engine) for _ in range(runs)]
    during, a_durations = [], []
    long_text = " ".join(f"Alpha sentence number {n}." for n in range(12))
    for _ in range(runs):
        a = runner.submit(steps(engine, long_text))
        next(a)
        done = threading.Event()
        a_started = time.perf_counter()

        def read_slowly(stream: Iterator[object] = a, finished: threading.Event = done) -> None:
            for _ in stream:
                time.sleep(READER_SLEEP_S)
            finished.set()

        threading.Thread(target=read_slowly, daemon=True).start()
        time.sleep(READER_SLEEP_S)  # A is now parked on its full queue, its reader asleep
        during.append(job_b(runner, engine))
        done.wait()
        a_durations.append(time.perf_counter() - a_started)
    b_alone, b_during = statistics.median(alone), statistics.median(during)
    print(f"  B alone (baseline):          {b_alone * 1000:7.1f} ms")
    print(f"  B beside A's slow stream:    {b_during * 1000:7.1f} ms   = {b_during / b_alone:.2f}x")
    print(
        f"  B's wait if A held the engine (A's reader-paced stream): "
        f"{statistics.median(a_durations) * 1000:7.1f} ms"
    )


def main() -> None:
    engine = PiperEngine.load()
    voice = engine.voice(engine.default_voice)
    engine.synthesize("Warm up.", voice=voice, language="en", speed=1.0)
    runner = EngineRunner(engine)
    try:
        print("hand-off, 3 sentences (median of 9):")
        hand_off(engine, runner, 9)
        print(f"a slow reader ({READER_SLEEP_S} s per chunk), median of 5:")
        slow_reader(runner, engine, 5)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
