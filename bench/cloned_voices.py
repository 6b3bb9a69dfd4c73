"""What a cloned voice costs a job, against the built-in voice it would otherwise use.

A job with a cloned voice reads its record (one tenant-store query) and its ready voice from the
worker's LRU; a new worker reads the latents from storage once. Peers that recompute the
latents from the reference on every request (openedai-speech) pay the conditioning pass each
time, so that pass is measured too, on the same reference, in the same process.

Synthesis is taken out: the engine's ``synthesize`` replays a fixed clip (only ``cloned_voice``
and ``compute_latents`` run the real XTTS code), so the figures are what the voice adds to a job.
XTTS is the random-weight checkpoint: tiny by default, ``--full-size`` for XTTS-v2's own sizes
(its conditioning and speaker encoders have the real compute; slow on a CPU).

Run: ``python -m bench.cloned_voices [--jobs N] [--full-size] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.http_api import timed
from bench.job_overhead import percentiles
from handlers.dispatch import dispatch
from shared.audio.encode import encode
from shared.audio.formats import AudioFormat
from shared.config import Settings
from shared.engines.base import Pcm, Voice
from shared.engines.piper import PiperEngine
from shared.engines.xtts import XttsEngine
from shared.jobs import ApiKeyCredentials
from shared.tenants.base import UNLIMITED
from shared.voices.reference import decode_reference
from shared.worker import build_worker
from tests.xtts_checkpoint import build_tiny_xtts_checkpoint

REFERENCE_TEXT = (
    "Thanks for calling Acme. This is the voice our customers hear on every call, all day long, "
    "and it should sound like us."
)


class ReplayingXtts(XttsEngine):
    """The real XTTS for voices and conditioning; a fixed clip for speech (taken out)."""

    clip: Pcm

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        self._prepare(text, voice, language, speed)  # the engine's own voice check
        return self.clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    piper = PiperEngine.load()
    speech = piper.synthesize(
        REFERENCE_TEXT, voice=piper.voice(piper.default_voice), language="en", speed=1.0
    )
    wav = encode(speech, in_rate=piper.sample_rate, fmt=AudioFormat.WAV, out_rate=24000)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_xtts_checkpoint(Path(tmp) / "xtts", full_size=args.full_size)
        xtts = ReplayingXtts.load(model_dir, device=args.device, warmup=False)
        xtts.clip = np.zeros(xtts.sample_rate, dtype=np.float32)  # 1 s
        settings = Settings(data_dir=Path(tmp) / "data", auth_cache_ttl_s=300, engine="xtts")
        ctx = build_worker(settings, engine=xtts)
        key = ctx.tenants.create_tenant("bench", UNLIMITED).api_key
        credentials = ApiKeyCredentials.of(key)
        b64 = base64.b64encode(wav).decode("ascii")
        mark = time.perf_counter()
        dispatch(
            {"action": "voices.create", "name": "Bench", "audio_base64": b64}, credentials, ctx
        )
        create_ms = (time.perf_counter() - mark) * 1000
        voice_id = ctx.tenants.list_voices(ctx.tenants.authenticate(key).id)[0].voice_id
        reference = decode_reference(wav, target_rate=xtts.reference_rate)

        def job(voice: str) -> Callable[[], object]:
            raw = {"text": "Hello.", "voice": voice, "delivery": "base64", "cache": False}
            return lambda: dispatch(raw, credentials, ctx)

        size = "full-size (30 x 1024)" if args.full_size else "tiny (2 x 256)"
        print(f"XTTS {size}, random weights, {args.device}; reference {reference.duration_s:.1f} s")
        print(f"voices.create (decode + latents + store): {create_ms:8.1f} ms, once per voice")
        builtin = timed(job(f"builtin:{xtts.default_voice}"), args.jobs)
        warm = timed(job(voice_id), args.jobs)

        def cold() -> object:
            ctx.voices.ready.forget(ctx.tenants.authenticate(key).id, voice_id)
            return job(voice_id)()

        cold_runs = timed(cold, max(args.jobs // 10, 5))
        recompute = timed(lambda: xtts.compute_latents(reference.pcm), max(args.jobs // 20, 3))
        base = float(np.median(builtin))
        print(f"\njob latency with synthesis replayed, {args.jobs} jobs each")
        for label, times in (
            ("built-in voice (baseline)", builtin),
            ("cloned voice, warm (LRU)", warm),
            ("cloned voice, new worker", cold_runs),
        ):
            extra = float(np.median(times)) - base
            print(f"  {label:<28} {percentiles(times)}   {extra:+8.3f} ms over built-in")
        print(
            f"  recomputing latents per job  {percentiles(recompute)}"
            f"   = {float(np.median(recompute)) / base:6.1f}x the built-in job"
        )
        ctx.close()


if __name__ == "__main__":
    main()
