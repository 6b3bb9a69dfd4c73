"""Structured events: one JSON log line per job, with what an operator needs and nothing secret
(never the API key, never the text)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

from pydantic import BaseModel

JOB_LOGGER = "serverless_tts.jobs"
_log = logging.getLogger(JOB_LOGGER)


class JobEvent(BaseModel):
    event: Literal["job"] = "job"
    action: str
    request_id: str | None = None
    tenant_id: str | None = None
    engine: str | None = None
    voice: str | None = None
    language: str | None = None
    format: str | None = None
    delivery: str | None = None
    chars: int = 0
    audio_s: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False
    success: bool
    error_code: str | None = None


def log_job_event(event: JobEvent) -> None:
    _log.info(event.model_dump_json(exclude_none=True))


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


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
