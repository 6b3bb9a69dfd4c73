"""The XTTS engine bench, run for real on the tiny checkpoint on CPU, so it never rots.

What is checked is that it completes and reports every figure for both kinds; its times are
measurements and never asserted. Its two cold-start processes run beside the rest, to be quick.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import xtts_engine
from bench.xtts_results import BenchResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = [1, 2]
LENGTHS = [8, 16]
REQUESTS = 2


@dataclass(frozen=True)
class BenchRun:
    document: dict[str, object]
    result: BenchResult
    chart: Path
    output: str


@pytest.fixture(scope="module")
def bench_run(tiny_xtts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out = tmp_path_factory.mktemp("bench-xtts")
    json_path, chart_path = out / "results.json", out / "chart.png"
    argv = [
        "--xtts-dir", str(tiny_xtts_dir), "--device", "cpu",
        "--concurrency", ",".join(map(str, LEVELS)), "--requests", str(REQUESTS),
        "--max-audio-tokens", "16", "--stream-chunk-tokens", "8",
        "--lengths", ",".join(map(str, LENGTHS)), "--cost-runs", "1",
        "--overlap-cold-start", "--json", str(json_path), "--chart", str(chart_path),
    ]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        xtts_engine.main(argv)
    document = json.loads(json_path.read_text())
    return BenchRun(document, BenchResult.model_validate(document), chart_path, printed.getvalue())


def _numbers(value: object, where: str = "") -> list[tuple[str, float]]:
    """Every number in a JSON document, with where it is."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _numbers(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _numbers(item, f"{where}[{i}]")]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return []
    return [(where, float(value))]


def test_the_json_has_every_section_for_both_kinds(bench_run: BenchRun) -> None:
    document = bench_run.document
    assert set(document) == {
        "setup", "cold_start", "one_stream", "streaming_cost", "concurrency"
    }  # fmt: skip
    for section in ("cold_start", "one_stream"):
        assert set(document[section]) == {"stock", "ours"}  # type: ignore[call-overload]
    result = bench_run.result
    assert [length.tokens for length in result.streaming_cost] == LENGTHS
    assert [level.streams for level in result.concurrency] == LEVELS
    assert all(level.requests >= max(level.streams, REQUESTS) for level in result.concurrency)
    assert result.setup.device == "cpu"
    assert result.setup.memory_metric == "rss_peak"
    assert result.setup.cold_start_overlapped


def test_every_figure_is_finite_and_the_measured_ones_positive(bench_run: BenchRun) -> None:
    numbers = _numbers(bench_run.document)
    assert len(numbers) > 40
    assert [where for where, value in numbers if not math.isfinite(value)] == []
    # Memory growth during a level may be zero; every time, rate and amount of audio is not.
    measured = [(where, value) for where, value in numbers if "extra_mib" not in where]
    assert [where for where, value in measured if value <= 0] == []


def test_each_kind_speaks_and_its_cold_start_runs_in_order(bench_run: BenchRun) -> None:
    result = bench_run.result
    for kind in ("stock", "ours"):
        cold = getattr(result.cold_start, kind)
        assert 0 < cold.process_start_s < cold.model_ready_s < cold.first_job_s
        assert cold.first_job_mib >= cold.ready_mib > 0
        # 16 tokens of 1024 samples at 22,050 Hz: about 0.74 s of audio at any output rate.
        assert getattr(result.one_stream, kind).audio_s == pytest.approx(16 * 1024 / 22050, 0.2)
    for length in result.streaming_cost:
        audio = length.tokens * 1024 / 22050
        assert length.cost.stock.audio_s == pytest.approx(audio, rel=0.2)
        assert length.cost.ours.audio_s == pytest.approx(audio, rel=0.2)


def test_the_table_has_every_figure_with_its_ratio(bench_run: BenchRun) -> None:
    rows = [line for line in bench_run.output.splitlines() if line.startswith("| ")]
    assert rows[0] == "| figure | stock coqui-tts | ours | ours / stock |"
    figures = rows[1:]
    assert len(figures) == 8 + len(LENGTHS) + 3 * len(LEVELS)
    for row in figures:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4, row
        float(cells[1]), float(cells[2])
        assert cells[3] == "n/a" or cells[3].endswith("x"), row
    for streams in LEVELS:
        assert any(f"throughput, {streams} streams" in row for row in figures)


def test_the_chart_is_a_png(bench_run: BenchRun) -> None:
    data = bench_run.chart.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > height > 200
