"""Structured events: one JSON log line per job, with what an operator needs and nothing secret
(never the API key, never the text)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from shared.tenants.base import UsageRecord

JOB_LOGGER = "serverless_tts.jobs"
_log = logging.getLogger(JOB_LOGGER)


class JobEvent(BaseModel):
    """One job, whatever its transport. ``job_id`` is the worker's own id for this run (one
    usage row each); ``request_id`` is the caller's (or the platform's) and may repeat."""

    event: Literal["job"] = "job"
    action: str
    job_id: str
    request_id: str | None = None
    tenant_id: str | None = None
    operator: bool = False
    engine: str | None = None
    # Why ``engine`` answered rather than the primary of the job's order (None: it was).
    fallback_reason: str | None = None
    voice: str | None = None
    voice_version: str | None = None
    language: str | None = None
    format: str | None = None
    delivery: str | None = None
    chars: int = 0
    audio_s: float = 0.0
    audio_bytes: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    streaming: bool = False
    success: bool
    error_code: str | None = None


def log_job_event(event: JobEvent) -> None:
    _log.info(event.model_dump_json(exclude_none=True))


def usage_record(event: JobEvent) -> UsageRecord:
    """The billing row for a job whose tenant is known (the event carries all it needs)."""
    assert event.tenant_id is not None and event.request_id is not None
    return UsageRecord(
        tenant_id=event.tenant_id,
        job_id=event.job_id,
        request_id=event.request_id,
        action=event.action,
        created_at=datetime.now(UTC),
        input_chars=event.chars,
        audio_bytes=event.audio_bytes,
        audio_seconds=event.audio_s,
        latency_ms=event.latency_ms,
        engine=event.engine,
        fallback_reason=event.fallback_reason,
        voice=event.voice,
        voice_version=event.voice_version,
        format=event.format,
        delivery=event.delivery,
        cached=event.cached,
        streaming=event.streaming,
        error_code=event.error_code,
    )


class JsonLineFormatter(logging.Formatter):
    """Job events are already JSON; other records are wrapped so every line parses."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == JOB_LOGGER:
            return message
        payload = {"level": record.levelname.lower(), "logger": record.name, "message": message}
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, not the stream it was made with (a
    test runner or a daemon may swap it, and a closed old stream would lose every line)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    handler = _CurrentStderr()
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request's full URL at INFO: a webhook's or a signed URL's query may carry
    # a token, so only its warnings reach the log.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
