"""Prometheus metrics for one worker, on a registry of its own (never the process-wide default).

Each ``WorkerContext`` owns one ``WorkerMetrics``, so two workers in one process (tests, a CLI
beside a server) count apart and ``/metrics`` shows exactly its own worker's jobs. The pipeline
reports to it from few places: the dispatcher when a job starts and ends and when a stream's
first audio leaves, the cache-hit stage for each audio-cache lookup, and the tenant store's auth
cache for each key lookup (through ``auth_cache_lookup``, so the store imports nothing of this).

Labels are bounded sets only: action, engine, outcome (``ok``, an error code or ``cancelled``),
format, delivery, cached, result. Never a tenant id, a key or text: each would make a series
per tenant or per sentence (cardinality) and put who said what on a dashboard (privacy).

Failover reports each fallback (the engine that failed, the one tried next, a bounded cause) and
each breaker transition per engine (0 closed, 1 half-open, 2 open).
"""

from __future__ import annotations

import logging
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from shared.telemetry import JOB_LOGGER, JobEvent

# A phone agent has about a second before a caller hears silence as trouble (the edge answers
# with <Say> past its 1.2 s deadline): fine buckets up to 2 s, coarse beyond.
FIRST_AUDIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)
# Whole jobs include long texts and greeting batches, read to their end.
DURATION_BUCKETS = (*FIRST_AUDIO_BUCKETS, 20.0, 30.0, 60.0)
# What the audio is: the first-audio histogram and the audio totals share these.
AUDIO_LABELS = ("engine", "format", "cached")
OK = "ok"
# A job refused before it was described (a bad key, a malformed field) has no engine yet.
NONE = "none"
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class WorkerMetrics:
    """The worker's counters, histograms and gauges; every method is thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = CollectorRegistry() if registry is None else registry
        self._jobs = Counter(
            "tts_jobs",
            "Jobs ended, by outcome.",
            ["action", "engine", "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "tts_job_duration_seconds",
            "From the worker taking a job to its end (a stream's: its last chunk read).",
            ["action", "engine", "delivery"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._first_audio = Histogram(
            "tts_time_to_first_audio_seconds",
            "From the worker taking a stream job to its first audio bytes handed on.",
            AUDIO_LABELS,
            buckets=FIRST_AUDIO_BUCKETS,
            registry=registry,
        )
        self._audio_s = Counter(
            "tts_audio_seconds", "Seconds of audio delivered.", AUDIO_LABELS, registry=registry
        )
        self._audio_bytes = Counter(
            "tts_audio_bytes", "Bytes of audio delivered.", AUDIO_LABELS, registry=registry
        )
        self._chars = Counter(
            "tts_text_chars",
            "Characters charged (spoken text).",
            ["action", "engine"],
            registry=registry,
        )
        self._active_jobs = Gauge("tts_active_jobs", "Jobs running now.", registry=registry)
        self._active_streams = Gauge("tts_active_streams", "Streams open now.", registry=registry)
        self._cache = Counter(
            "tts_cache_lookups",
            "Audio-cache lookups, by result.",
            ["engine", "result"],
            registry=registry,
        )
        self._auth_cache = Counter(
            "tts_auth_cache_lookups",
            "API-key lookups in the auth cache.",
            ["result"],
            registry=registry,
        )

        self._fallbacks = Counter(
            "tts_engine_fallbacks",
            "Jobs moved on from a failing engine to the next one in their order.",
            ["from_engine", "to_engine", "cause"],
            registry=registry,
        )
        self._uploads = Histogram(
            "tts_storage_upload_seconds",
            "Storing one job's audio (and its cache entry), by outcome.",
            ["outcome"],
            buckets=FIRST_AUDIO_BUCKETS,
            registry=registry,
        )
        self._breaker = Gauge(
            "tts_engine_breaker_state",
            "Each engine's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["engine"],
            registry=registry,
        )

    def job_started(self) -> None:
        self._active_jobs.inc()

    def job_finished(self, event: JobEvent) -> None:
        """Count a job that ``job_started`` announced, from its one event."""
        self._active_jobs.dec()
        engine = event.engine or NONE
        outcome = OK if event.success else event.error_code or NONE
        self._jobs.labels(event.action, engine, outcome).inc()
        delivery = event.delivery or NONE
        self._duration.labels(event.action, engine, delivery).observe(event.latency_ms / 1000)
        if event.chars:
            self._chars.labels(event.action, engine).inc(event.chars)
        if event.audio_bytes:
            audio = (engine, event.format or NONE, _flag(event.cached))
            self._audio_s.labels(*audio).inc(event.audio_s)
            self._audio_bytes.labels(*audio).inc(event.audio_bytes)

    def stream_opened(self) -> None:
        self._active_streams.inc()

    def stream_closed(self) -> None:
        self._active_streams.dec()

    def first_audio(self, event: JobEvent, seconds: float, *, cached: bool) -> None:
        """A stream's first audio bytes left the worker ``seconds`` after it took the job."""
        labels = (event.engine or NONE, event.format or NONE, _flag(cached))
        self._first_audio.labels(*labels).observe(seconds)

    def cache_lookup(self, engine: str, *, hit: bool) -> None:
        self._cache.labels(engine, _result(hit)).inc()

    def fallback(self, from_engine: str, to_engine: str, cause: str) -> None:
        self._fallbacks.labels(from_engine, to_engine, cause).inc()

    def breaker_state(self, engine: str, state: str) -> None:
        self._breaker.labels(engine).set(BREAKER_STATES[state])

    def storage_upload(self, seconds: float, *, ok: bool) -> None:
        self._uploads.labels(outcome="ok" if ok else "failed").observe(seconds)

    def auth_cache_lookup(self, hit: bool) -> None:
        self._auth_cache.labels(_result(hit)).inc()

    def snapshot(self) -> dict[str, float]:
        """Every total and gauge so far, keyed as Prometheus writes them; histograms as their
        ``_count`` and ``_sum`` only (their buckets would make a log line hundreds of entries)."""
        figures = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith(("_bucket", "_created")):
                    continue
                labels = ",".join(f'{name}="{value}"' for name, value in sample.labels.items())
                figures[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return figures


class MetricsEvent(BaseModel):
    """The worker's figures after a job: where nothing scrapes ``/metrics`` (RunPod keeps only
    each worker's log lines), this line is how an operator reads them."""

    event: Literal["metrics"] = "metrics"
    job_id: str | None
    metrics: dict[str, float]


def log_metrics_event(metrics: WorkerMetrics, job_id: str | None) -> None:
    event = MetricsEvent(job_id=job_id, metrics=metrics.snapshot())
    logging.getLogger(JOB_LOGGER).info(event.model_dump_json())


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _result(hit: bool) -> str:
    return "hit" if hit else "miss"
