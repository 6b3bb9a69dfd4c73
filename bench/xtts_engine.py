"""XTTS engine bench: stock coqui-tts against this product's XTTS engine, in one run.

Both kinds run on the same checkpoint, device, token cap and chunk size. Stock is coqui-tts
called directly (bench/xtts_stock.py); ours is the engine as the worker builds it (``Settings``,
so ``TTS_XTTS_*`` variables set around the bench configure it as they configure a worker) and
is measured only through its public interface: ``stream`` and ``synthesize`` for one stream, and
jobs through the worker's own path (prepare, then render on the engine runner) for concurrency.
Whatever the engine does (windowed decode, batched streams) is therefore what gets measured.

Figures, each for stock and ours with the ratio ours / stock:
- cold start: a fresh process per kind, spawn -> code running -> model ready -> first job done;
- time to first audio p50/p95 and real-time factor over sequential single streams;
- streaming total over whole-segment total at several segment lengths (the 1.15x target);
- peak memory: GPU (``torch.cuda.max_memory_allocated``) on CUDA, resident set on CPU;
- throughput (audio s per wall s) and p95 first audio at each number of concurrent streams.
Random weights never stop, so every request generates exactly its token cap (21.5 tokens per
second of audio) and runs compare. The tiny checkpoint's times say nothing about real XTTS-v2;
``--full-size`` has XTTS-v2's real compute (meant for a GPU; minutes on a CPU).

Run: ``python -m bench.xtts_engine [--full-size] [--device auto|cuda|cpu]
[--concurrency 1,4,16,64] [--max-audio-tokens 64] [--requests 16] [--json PATH] [--chart [PATH]]``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from bench.engines import XTTS_TEXT, Run, median, timed_stream
from bench.xtts_results import (
    BenchResult,
    ColdStart,
    Compared,
    LengthCost,
    Level,
    LevelPair,
    OneStream,
    Setup,
    StreamingCost,
    table,
    write_chart,
)
from bench.xtts_stock import LANGUAGE, StockXtts, load_stock
from handlers.prepare import SpeechRequest, prepare
from handlers.render import render_stream
from shared.audio.formats import AudioFormat
from shared.config import Settings
from shared.engines.base import Engine, Pcm
from shared.worker import WorkerContext, build_engine, build_worker

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHART = REPO / "bench" / "charts" / "xtts_engine.png"
KINDS: tuple[str, ...] = ("stock", "ours")
MIB = 1024 * 1024


# --- memory ------------------------------------------------------------------------------------


class MemoryProbe:
    """This process's peak memory: torch's allocator on CUDA, the resident set on CPU.

    On CPU the peak is Linux's VmHWM, which writing "5" to /proc/self/clear_refs resets to the
    current resident set, so one process can measure one phase after another.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.metric = "cuda_max_memory_allocated" if self.cuda else "rss_peak"

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")

    def current_mib(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated() / MIB
        return _status_kib("VmRSS") / 1024

    def peak_mib(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / MIB
        return _status_kib("VmHWM") / 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}: the CPU memory figures need Linux")
    return int(match.group(1))


# --- the two kinds -----------------------------------------------------------------------------


def ours_settings(
    model_dir: Path, *, device: str, max_audio_tokens: int, stream_chunk_tokens: int, data: Path
) -> Settings:
    """A worker's settings for the engine under test: the fields the bench fixes are given
    here, every other TTS_ variable (batch size, ...) comes from the environment as usual."""
    return Settings(
        engine="xtts",
        engines=None,
        xtts_model_dir=model_dir,
        xtts_device=device,
        xtts_max_audio_tokens=max_audio_tokens,
        xtts_stream_chunk_tokens=stream_chunk_tokens,
        data_dir=data,
        tenant_store="sqlite",
        storage="local",
    )


def job_request() -> SpeechRequest:
    """The job every stream of ours runs: the bench's one segment, streamed as raw PCM, so no
    encoder cost is in the figures."""
    return SpeechRequest(
        text=XTTS_TEXT,
        ssml=None,
        voice=None,
        language=LANGUAGE,
        speed=1.0,
        format=AudioFormat.PCM16,
        sample_rate=None,
        delivery="stream",
        cache=False,
    )


def job_stream(ctx: WorkerContext, request_id: str) -> Iterator[Pcm]:
    """One job's audio the way the worker makes it: prepared, then rendered on the runner."""
    return render_stream(prepare(job_request(), ctx, tenant=None, request_id=request_id))


def engine_stream(engine: Engine) -> Iterator[Pcm]:
    voice = engine.voice(engine.default_voice)
    return engine.stream(XTTS_TEXT, voice=voice, language=LANGUAGE, speed=1.0)


def engine_whole(engine: Engine) -> Pcm:
    voice = engine.voice(engine.default_voice)
    return engine.synthesize(XTTS_TEXT, voice=voice, language=LANGUAGE, speed=1.0)


# --- cold start: one fresh process per kind ----------------------------------------------------


class ChildReport(ColdStart):
    """What a cold-start child writes: wall-clock instants (epoch seconds) in the ``_s`` fields."""


def child_main(args: argparse.Namespace) -> None:
    """A cold start of one kind: load, run one job, report instants and memory to a file."""
    running = time.time()
    probe = MemoryProbe(args.device)
    with tempfile.TemporaryDirectory(prefix="bench-xtts-child-") as data:
        if args.child == "stock":
            stock = load_stock(
                args.xtts_dir,
                device=args.device,
                max_audio_tokens=args.max_audio_tokens,
                stream_chunk_tokens=args.stream_chunk_tokens,
            )
            ready, ready_mib = time.time(), probe.peak_mib()
            for _ in stock.stream(XTTS_TEXT):
                pass
        else:
            settings = ours_settings(
                args.xtts_dir,
                device=args.device,
                max_audio_tokens=args.max_audio_tokens,
                stream_chunk_tokens=args.stream_chunk_tokens,
                data=Path(data),
            )
            ctx = build_worker(settings)
            ready, ready_mib = time.time(), probe.peak_mib()
            try:
                for _ in job_stream(ctx, "cold-start"):
                    pass
            finally:
                ctx.close()
        report = ChildReport(
            process_start_s=running,
            model_ready_s=ready,
            first_job_s=time.time(),
            ready_mib=ready_mib,
            first_job_mib=probe.peak_mib(),
        )
    Path(args.child_out).write_text(report.model_dump_json())


@dataclass
class ColdStartChild:
    """One cold-start process, spawned at ``spawned`` (epoch seconds), reporting to ``out``."""

    kind: str
    spawned: float
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    @classmethod
    def spawn(
        cls, kind: str, args: argparse.Namespace, model_dir: Path, device: str, out: Path
    ) -> ColdStartChild:
        command = [
            sys.executable, "-m", "bench.xtts_engine", "--child", kind, "--child-out", str(out),
            "--xtts-dir", str(model_dir), "--device", device,
            "--max-audio-tokens", str(args.max_audio_tokens),
            "--stream-chunk-tokens", str(args.stream_chunk_tokens),
        ]  # fmt: skip
        log = out.with_suffix(".log")
        with log.open("wb") as sink:  # a file, not a pipe: a child never blocks on its output
            spawned = time.time()
            process = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        return cls(kind, spawned, process, out, log)

    def result(self) -> ColdStart:
        """Wait for the process; its instants, relative to the spawn."""
        code = self.process.wait()
        if code != 0:
            output = self.log.read_text(errors="replace")
            raise RuntimeError(f"the {self.kind} cold-start process failed ({code}):\n{output}")
        report = ChildReport.model_validate_json(self.out.read_text())
        one = ColdStart(
            process_start_s=report.process_start_s - self.spawned,
            model_ready_s=report.model_ready_s - self.spawned,
            first_job_s=report.first_job_s - self.spawned,
            ready_mib=report.ready_mib,
            first_job_mib=report.first_job_mib,
        )
        print(
            f"  cold start {self.kind:5s}: running {one.process_start_s:.2f} s, ready"
            f" {one.model_ready_s:.2f} s, first job done {one.first_job_s:.2f} s", flush=True,
        )  # fmt: skip
        return one

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- one stream at a time ----------------------------------------------------------------------


def one_stream(stock: StockXtts, engine: Engine, requests: int, rate: int) -> Compared[OneStream]:
    runs: dict[str, list[Run]] = {kind: [] for kind in KINDS}
    for _ in range(requests):  # interleaved, so drift in machine load hits both alike
        runs["stock"].append(timed_stream(partial(stock.stream, XTTS_TEXT), stock.sample_rate))
        runs["ours"].append(timed_stream(partial(engine_stream, engine), rate))
    figures = {
        kind: OneStream(
            first_audio_p50_s=percentile([run.first_chunk_s for run in kind_runs], 50),
            first_audio_p95_s=percentile([run.first_chunk_s for run in kind_runs], 95),
            rtf=median(kind_runs, "total_s") / median(kind_runs, "audio_s"),
            audio_s=median(kind_runs, "audio_s"),
        )
        for kind, kind_runs in runs.items()
    }
    return Compared[OneStream](**figures)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# --- streaming cost at several segment lengths -------------------------------------------------


def streaming_costs(
    stock: StockXtts,
    engine: Engine,
    settings: Settings,
    lengths: Sequence[int],
    runs: int,
) -> list[LengthCost]:
    """Stream vs whole per length. Ours is capped at load time, so a length other than the
    bench's cap is measured on an engine loaded for it, the way a worker would be."""
    costs = []
    for tokens in lengths:
        loaded = None
        if tokens != settings.xtts_max_audio_tokens:
            loaded = build_engine(settings.model_copy(update={"xtts_max_audio_tokens": tokens}))
        with stock.capped(tokens):
            cost = streaming_cost(stock, loaded or engine, runs)
        del loaded
        _free_memory(settings.xtts_device)
        costs.append(LengthCost(tokens=tokens, cost=cost))
        print(
            f"  {tokens:4d} tokens: stream / whole  stock {cost.stock.ratio:.2f}x"
            f"  ours {cost.ours.ratio:.2f}x", flush=True,
        )  # fmt: skip
    return costs


def streaming_cost(stock: StockXtts, engine: Engine, runs: int) -> Compared[StreamingCost]:
    """Medians over ``runs`` of whole then streamed, for each kind in turn (interleaved).

    Compute is the process's CPU time (every torch thread's, on CPU), not wall time: on a
    shared host, wall time measures the neighbours. On CUDA, CPU time is the host's side only,
    so there the wall time of the synchronized call is taken instead."""
    paths = {
        "stock": (partial(stock.stream, XTTS_TEXT), partial(stock.synthesize, XTTS_TEXT)),
        "ours": (partial(engine_stream, engine), partial(engine_whole, engine)),
    }
    streamed: dict[str, list[float]] = {kind: [] for kind in KINDS}
    wholes: dict[str, list[float]] = {kind: [] for kind in KINDS}
    audio: dict[str, list[float]] = {kind: [] for kind in KINDS}
    rates = {"stock": stock.sample_rate, "ours": engine.sample_rate}
    for _ in range(runs):
        for kind, (stream, whole) in paths.items():
            spent, pcm = compute_s(whole)
            wholes[kind].append(spent)
            audio[kind].append(pcm.size / rates[kind])
            spent, _ = compute_s(lambda stream=stream: np.concatenate(list(stream())))
            streamed[kind].append(spent)
    costs = {}
    for kind in KINDS:
        stream_s, whole_s = float(np.median(streamed[kind])), float(np.median(wholes[kind]))
        costs[kind] = StreamingCost(
            stream_s=stream_s,
            whole_s=whole_s,
            ratio=stream_s / whole_s,
            audio_s=float(np.median(audio[kind])),
        )
    return Compared[StreamingCost](**costs)


def compute_s(call: Callable[[], Pcm]) -> tuple[float, Pcm]:
    """The compute one call took (see ``streaming_cost``) and what it returned."""
    import torch

    on_cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    clock = time.perf_counter if on_cuda else time.process_time
    started = clock()
    pcm = call()
    if on_cuda:
        torch.cuda.synchronize()
    return clock() - started, pcm


def _free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# --- concurrent streams ------------------------------------------------------------------------


def run_level(
    open_stream: Callable[[str], Iterator[Pcm]],
    *,
    streams: int,
    per_stream: int,
    rate: int,
    probe: MemoryProbe,
) -> Level:
    """``streams`` clients at once, each running ``per_stream`` requests back to back."""
    runs: list[Run] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    gate = threading.Barrier(streams + 1)

    def client(index: int) -> None:
        gate.wait()
        try:
            for n in range(per_stream):
                run = timed_stream(partial(open_stream, f"bench-{index}-{n}"), rate)
                with lock:
                    runs.append(run)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(streams)]
    for thread in threads:
        thread.start()
    probe.reset()
    held = probe.current_mib()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    firsts = [run.first_chunk_s for run in runs]
    return Level(
        throughput=sum(run.audio_s for run in runs) / wall,
        first_audio_p50_s=percentile(firsts, 50),
        first_audio_p95_s=percentile(firsts, 95),
        extra_mib=max(0.0, probe.peak_mib() - held),
    )


def concurrency(
    stock: StockXtts,
    ctx: WorkerContext,
    levels: Sequence[int],
    requests: int,
    probe: MemoryProbe,
) -> list[LevelPair]:
    rate = ctx.engines.default.engine.sample_rate
    pairs = []
    for streams in levels:
        per_stream = math.ceil(requests / streams)
        stock_level = run_level(
            lambda _: stock.stream(XTTS_TEXT),
            streams=streams,
            per_stream=per_stream,
            rate=stock.sample_rate,
            probe=probe,
        )
        ours_level = run_level(
            lambda request_id: job_stream(ctx, request_id),
            streams=streams,
            per_stream=per_stream,
            rate=rate,
            probe=probe,
        )
        pairs.append(
            LevelPair(
                streams=streams,
                requests=streams * per_stream,
                result=Compared(stock=stock_level, ours=ours_level),
            )
        )
        print(
            f"  {streams:3d} streams: throughput stock {stock_level.throughput:.2f}"
            f"  ours {ours_level.throughput:.2f} audio s/s; first audio p95 stock"
            f" {stock_level.first_audio_p95_s:.3f} s  ours {ours_level.first_audio_p95_s:.3f} s",
            flush=True,
        )
    return pairs


# --- the run -----------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> BenchResult:
    import torch

    device = resolve_device(args.device, cuda=torch.cuda.is_available())
    with tempfile.TemporaryDirectory(prefix="bench-xtts-") as tmp:
        model_dir, checkpoint = checkpoint_dir(args, Path(tmp))
        print(f"checkpoint: {checkpoint}; device: {device}", flush=True)

        def spawn(kind: str) -> ColdStartChild:
            return ColdStartChild.spawn(kind, args, model_dir, device, Path(tmp) / f"{kind}.json")

        if args.overlap_cold_start:
            children = [spawn(kind) for kind in KINDS]
            try:
                warm = measure_warm(args, model_dir, device, Path(tmp) / "data")
                cold = Compared[ColdStart](**{c.kind: c.result() for c in children})
            finally:
                for child in children:
                    child.stop()
        else:  # one at a time, alone on the machine, before anything else loads here
            cold = Compared[ColdStart](**{kind: spawn(kind).result() for kind in KINDS})
            warm = measure_warm(args, model_dir, device, Path(tmp) / "data")
    single, costs, levels, memory_metric = warm
    return BenchResult(
        setup=Setup(
            device=device,
            device_name=device_name(device),
            checkpoint=checkpoint,
            torch=torch.__version__,
            max_audio_tokens=args.max_audio_tokens,
            stream_chunk_tokens=args.stream_chunk_tokens,
            requests=args.requests,
            memory_metric=memory_metric,
            cold_start_overlapped=args.overlap_cold_start,
        ),
        cold_start=cold,
        one_stream=single,
        streaming_cost=costs,
        concurrency=levels,
    )


def measure_warm(
    args: argparse.Namespace, model_dir: Path, device: str, data: Path
) -> tuple[Compared[OneStream], list[LengthCost], list[LevelPair], str]:
    """Everything measured on warm models in this process: both kinds loaded side by side."""
    probe = MemoryProbe(device)
    stock = load_stock(
        model_dir,
        device=device,
        max_audio_tokens=args.max_audio_tokens,
        stream_chunk_tokens=args.stream_chunk_tokens,
    )
    stock.synthesize("Hello.")  # warm, as the engine warms itself at load
    settings = ours_settings(
        model_dir,
        device=device,
        max_audio_tokens=args.max_audio_tokens,
        stream_chunk_tokens=args.stream_chunk_tokens,
        data=data,
    )
    ctx = build_worker(settings)
    try:
        engine = ctx.engines.default.engine
        print(f"one stream, {args.requests} requests each:", flush=True)
        single = one_stream(stock, engine, args.requests, engine.sample_rate)
        print("streaming total / whole-segment total:", flush=True)
        costs = streaming_costs(stock, engine, settings, args.lengths, args.cost_runs)
        print("concurrent streams:", flush=True)
        levels = concurrency(stock, ctx, args.concurrency, args.requests, probe)
    finally:
        ctx.close()
    return single, costs, levels, probe.metric


def checkpoint_dir(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    if args.xtts_dir is not None:
        return args.xtts_dir, f"model at {args.xtts_dir}"
    from tests.xtts_checkpoint import build_tiny_xtts_checkpoint

    started = time.perf_counter()
    name = "full-size (30 x 1024) random" if args.full_size else "tiny (2 x 256) random"
    model_dir = build_tiny_xtts_checkpoint(tmp / "model", full_size=args.full_size)
    print(f"built the {name} checkpoint in {time.perf_counter() - started:.1f} s", flush=True)
    return model_dir, name


def resolve_device(device: str, *, cuda: bool) -> str:
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    return device


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    found = (
        re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if cpuinfo.exists()
        else None
    )
    return f"{found.group(1).strip() if found else 'CPU'} ({os.cpu_count()} cores)"


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive integers: {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="30 x 1024 random XTTS (GPU)")
    parser.add_argument("--xtts-dir", type=Path, default=None, help="a model directory to use")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--concurrency", type=_int_list, default=[1, 4, 16, 64])
    parser.add_argument("--max-audio-tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--stream-chunk-tokens", type=int, default=20)
    parser.add_argument(
        "--requests", type=int, default=16, help="per figure (at least one per stream)"
    )
    parser.add_argument(
        "--lengths", type=_int_list, default=None, help="segment lengths in tokens for the "
        "streaming cost (default: a quarter, half, all and twice the cap)",
    )  # fmt: skip
    parser.add_argument("--cost-runs", type=int, default=3, help="runs per streaming cost")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--chart", type=Path, nargs="?", const=DEFAULT_CHART, default=None,
        help=f"write the chart (PNG) here (alone: {DEFAULT_CHART.relative_to(REPO)})",
    )  # fmt: skip
    parser.add_argument(
        "--overlap-cold-start", action="store_true",
        help="run both cold-start processes at once, beside the rest (quick smoke runs only: "
        "their figures then measure nothing)",
    )  # fmt: skip
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.cost_runs < 1 or args.max_audio_tokens < 8:
        parser.error("--requests and --cost-runs must be >= 1, --max-audio-tokens >= 8")
    if args.lengths is None:
        cap = args.max_audio_tokens
        args.lengths = sorted({max(8, cap // 4), max(8, cap // 2), cap, cap * 2})
    if min(args.lengths) < 8:
        parser.error("--lengths must be >= 8 tokens (the engine's smallest cap)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # transformers warns about GPT-2 token ids XTTS never uses; keep the figures readable.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.child is not None:
        child_main(args)
        return
    result = run_bench(args)
    print()
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.model_dump_json(indent=2))
        print(f"\nresults: {args.json}")
    if args.chart is not None:
        write_chart(result, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
