"""Cache hit vs cache miss, end to end through the job dispatcher, in one run.

A hit is auth (cached) + one small read of the entry's sidecar + a presign: no engine. A miss is
a lookup that finds nothing, then Piper synthesis + MP3 encoding + upload of audio and sidecar +
presign. Storage is a real S3-compatible server on
loopback (moto) and, for comparison, the local disk store.
Run: ``python -m bench.cache_hit [--jobs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.piper import PiperEngine
from shared.storage.base import AudioStore
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED
from shared.worker import build_storage, build_worker
from tests.s3_server import MotoS3, s3_client_for

PHRASE = "Thanks for calling Acme. How can I help you today?"


def timed(jobs: int, run: object) -> list[float]:
    times = []
    for n in range(jobs):
        mark = time.perf_counter()
        run(n)  # type: ignore[operator]
        times.append((time.perf_counter() - mark) * 1000)
    return times


def report(label: str, times: list[float], baseline: float | None = None) -> float:
    p50 = statistics.median(times)
    p95 = statistics.quantiles(times, n=100)[94]
    ratio = f"   = {p50 / baseline:.4f}x miss" if baseline else ""
    print(f"{label:<22} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms   {1000 / p50:8.1f} jobs/s{ratio}")
    return p50


def bench_store(label: str, store: AudioStore, piper: PiperEngine, jobs: int, tmp: Path) -> None:
    settings = Settings(data_dir=tmp / label, auth_cache_ttl_s=300)
    ctx = build_worker(settings, engine=piper, storage=store)
    key = ctx.tenants.create_tenant("bench", UNLIMITED).api_key
    job = {"api_key": key, "text": PHRASE, "format": "mp3"}
    # A real miss: a phrase not yet cached (lookup, synthesis, encoding, upload, sidecar, presign).
    miss = timed(max(jobs // 10, 10), lambda n: run_job({**job, "text": f"{PHRASE} ({n})"}, ctx))
    run_job(job, ctx)  # fill the entry
    hit = timed(jobs, lambda n: run_job(job, ctx))
    assert all(run_job(job, ctx)[0]["cached"] for _ in range(3))
    print(f"-- {label}")
    baseline = report("miss (Piper + mp3)", miss)
    report("hit", hit, baseline)
    ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    piper = PiperEngine.load()
    server = MotoS3()
    server.start()
    try:
        client = s3_client_for(server.endpoint_url)
        client.create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as tmp:
            s3 = S3AudioStore(client, bucket="bench")
            bench_store("s3 (moto, loopback)", s3, piper, args.jobs, Path(tmp))
            local = build_storage(Settings(data_dir=Path(tmp) / "local"))
            bench_store("local disk", local, piper, args.jobs, Path(tmp))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
