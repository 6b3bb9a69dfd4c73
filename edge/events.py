"""What the edge tells an operator: one JSON log line per webhook (``voice.webhook``) and per
Media Stream (``voice.stream``), in-process counters, and the app's Prometheus figures
(``edge.metrics``), all fed here so a log line and a metric can never disagree.

Nothing secret or personal goes in: no key, no signature, no caller number, no speech or reply
text; a call is named by its CallSid only.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from edge.metrics import EdgeMetrics

EDGE_LOGGER = "serverless_tts.edge"
_log = logging.getLogger(EDGE_LOGGER)

# play / say: what the caller hears; stream: a Media Stream carries it; gather: only listening
# (an empty turn, or a streamed turn that played); refused: no TwiML (403, 404, 413...).
ResponseType = Literal["play", "say", "stream", "gather", "refused"]
StreamOutcome = Literal["played", "failed", "stopped", "interrupted", "gone", "refused"]


class WebhookEvent(BaseModel):
    """One Twilio webhook. ``worker_latency_ms`` is how long the worker call took when it
    answered inside the webhook (None: not called, or not in time); ``fallback_reason`` says
    why the caller did not hear what was planned (``deadline``, ``worker_<reason>``,
    ``responder_<reason>``, ``stream_failed``...)."""

    event: Literal["voice.webhook"] = "voice.webhook"
    business: str | None  # None: not a configured business (never echoed from the path)
    call_sid: str | None = None
    route: str
    status: int = 200
    latency_ms: float
    response_type: ResponseType
    worker_latency_ms: float | None = None
    fallback_reason: str | None = None


class StreamEvent(BaseModel):
    """One Media Stream (one streamed reply): how soon its first frame went out after Twilio's
    ``start``, how much audio it carried, and how it ended."""

    event: Literal["voice.stream"] = "voice.stream"
    business: str | None
    call_sid: str | None = None
    turn: str | None = None
    outcome: StreamOutcome
    first_frame_ms: float | None = None
    audio_ms: float = 0.0
    fallback_reason: str | None = None


@dataclass
class EdgeCounters:
    """Totals since start, as plain counters, and the same events as Prometheus figures."""

    webhooks: int = 0
    responses: Counter[str] = field(default_factory=Counter)  # by response type
    fallbacks: Counter[str] = field(default_factory=Counter)  # by reason
    refusals: Counter[int] = field(default_factory=Counter)  # by HTTP status
    streams: Counter[str] = field(default_factory=Counter)  # by outcome
    metrics: EdgeMetrics = field(default_factory=EdgeMetrics)

    def snapshot(self) -> dict[str, object]:
        return {
            "webhooks": self.webhooks,
            "responses": dict(self.responses),
            "fallbacks": dict(self.fallbacks),
            "refusals": dict(self.refusals),
            "streams": dict(self.streams),
        }


def record_webhook(counters: EdgeCounters, event: WebhookEvent) -> None:
    counters.webhooks += 1
    counters.responses[event.response_type] += 1
    if event.fallback_reason is not None:
        counters.fallbacks[event.fallback_reason] += 1
    if event.status != 200:
        counters.refusals[event.status] += 1
    counters.metrics.webhook(event)
    _log.info(event.model_dump_json())


def record_stream(counters: EdgeCounters, event: StreamEvent) -> None:
    counters.streams[event.outcome] += 1
    if event.fallback_reason is not None:
        counters.fallbacks[event.fallback_reason] += 1
    counters.metrics.stream(event)
    _log.info(event.model_dump_json())


def configure_edge_logging(level: int = logging.INFO) -> None:
    """Send the edge's events to stdout, one JSON line each, as they are (Modal and most ASGI
    hosts keep stdout; Python's own last-resort handler would drop INFO). Done once."""
    if _log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _log.addHandler(handler)
    _log.setLevel(level)
    _log.propagate = False
