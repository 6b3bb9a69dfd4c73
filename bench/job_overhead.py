"""Per-job overhead excluding synthesis: validation, cached auth, encoding and delivery.

Synthesis is taken out by replaying audio that real Piper made once for the same phrase, so what
remains is the worker's own cost per job. Run: ``python -m bench.job_overhead [--jobs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.base import Pcm, Voice
from shared.engines.piper import PiperEngine
from shared.tenants.base import UNLIMITED
from shared.worker import build_worker

PHRASE = "Thanks for calling Acme. How can I help you today?"


class ReplayEngine:
    """Piper's identity and voices, with one pre-made phrase returned instantly."""

    def __init__(self, engine: PiperEngine, pcm: Pcm) -> None:
        self._engine, self._pcm = engine, pcm
        self.name, self.model_version = engine.name, engine.model_version
        self.sample_rate, self.languages = engine.sample_rate, engine.languages
        self.default_voice, self.streaming = engine.default_voice, engine.streaming

    def voices(self) -> Sequence[Voice]:
        return self._engine.voices()

    def voice(self, voice_id: str) -> Voice:
        return self._engine.voice(voice_id)

    def segment_limit(self, language: str) -> int:
        return 10_000  # one segment per job: the phrase is replayed once

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        return self._pcm

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        yield self._pcm


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {statistics.median(values):7.3f} ms   p95 {cuts[94]:7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()

    piper = PiperEngine.load()
    pcm = piper.synthesize(PHRASE, voice=piper.voice(piper.default_voice), language="en", speed=1.0)
    synth_times = []
    for _ in range(5):
        mark = time.perf_counter()
        piper.synthesize(PHRASE, voice=piper.voice(piper.default_voice), language="en", speed=1.0)
        synth_times.append((time.perf_counter() - mark) * 1000)
    print(f"phrase: {len(PHRASE)} chars, {len(pcm) / piper.sample_rate:.2f} s of audio")
    print(f"Piper synthesis of it (baseline): p50 {statistics.median(synth_times):.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), engine="piper", auth_cache_ttl_s=300)
        ctx = build_worker(settings, engine=ReplayEngine(piper, pcm))
        key = ctx.tenants.create_tenant("bench", UNLIMITED).api_key
        cases = {
            "wav  base64": {"format": "wav", "delivery": "base64"},
            "mp3  url   ": {"format": "mp3", "delivery": "url"},
            "mulaw base64": {"format": "mulaw", "delivery": "base64"},
            "ogg_opus url": {"format": "ogg_opus", "delivery": "url"},
        }
        print(f"\n{args.jobs} jobs per case, auth cached (first job warms the cache)")
        for label, fields in cases.items():
            # cache off: every job encodes and delivers, as a miss does (a hit is bench.cache_hit)
            job = {"api_key": key, "text": PHRASE, "cache": False, **fields}
            run_job(job, ctx)
            overheads, stage = [], {"auth_ms": [], "encode_ms": [], "deliver_ms": []}
            for _ in range(args.jobs):
                [result] = run_job(job, ctx)
                timings = result["timings"]
                overheads.append(timings["total_ms"] - timings["synth_ms"])
                for name, values in stage.items():
                    values.append(timings[name])
            ratio = statistics.median(overheads) / statistics.median(synth_times)
            print(f"{label}: overhead {percentiles(overheads)}   = {ratio:.3f}x Piper synthesis")
            for name, values in stage.items():
                print(f"    {name:<10} p50 {statistics.median(values):7.3f} ms")
        no_encode = {
            "api_key": key,
            "text": PHRASE,
            "format": "pcm16",
            "delivery": "base64",
            "cache": False,
        }
        overheads, hand_offs = [], []
        for _ in range(args.jobs):
            [result] = run_job(no_encode, ctx)
            overheads.append(result["timings"]["total_ms"] - result["timings"]["synth_ms"])
            hand_offs.append(result["timings"]["synth_ms"])
        print(f"pcm16 base64 (validation + auth + base64 only): {percentiles(overheads)}")
        # The replayed engine answers at once, so its synth_ms is the trip to the engine's own
        # thread and back (shared/engines/runner.py).
        print(f"engine thread hand-off (synth_ms of the instant engine): {percentiles(hand_offs)}")
        ctx.close()


if __name__ == "__main__":
    main()
