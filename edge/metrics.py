"""The edge's Prometheus figures, on a registry each app owns (never the process-wide default),
fed from its events (``edge.events``): whatever records a webhook or a Media Stream counts it.

Labels are bounded sets only: the configured businesses (few, named by the operator), route,
response type, HTTP status, fallback reason, stream outcome, greeting result. Never a CallSid,
a number or words: each would make a series per call (cardinality) and put who called whom on
a dashboard (privacy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from edge.events import StreamEvent, WebhookEvent

# Twilio hears silence as trouble after about a second and gives up on a webhook at 15 s
# (error 11205): fine buckets to 2 s, then coarse ones to that limit.
WEBHOOK_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0),
    *(3.0, 5.0, 10.0, 15.0),
)
# A streamed reply's first frame, after Twilio's ``start``: the caller waits for it.
FIRST_FRAME_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# No configured business can be named so (names start with a letter or digit).
UNKNOWN = "_unknown"
NONE = "none"


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = CollectorRegistry() if registry is None else registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self._webhooks = counter(
            "tts_edge_webhooks",
            "Twilio webhooks answered, by what was answered and why any fallback happened.",
            *("business", "route", "status", "response_type", "fallback_reason"),
        )
        self._webhook_s = histogram(
            "tts_edge_webhook_duration_seconds",
            "From a webhook's arrival to its answer.",
            WEBHOOK_BUCKETS,
            *("business", "route", "response_type"),
        )
        self._worker_s = histogram(
            "tts_edge_worker_latency_seconds",
            "How long the worker took when it answered (or failed) inside a webhook's wait.",
            WEBHOOK_BUCKETS,
            *("business", "route"),
        )
        self._greetings = counter(
            "tts_edge_greetings",
            "Incoming calls' greetings: hit (played from the cache), miss (said while it "
            "warms) or failed (the worker in trouble or too slow to look it up).",
            *("business", "result"),
        )
        self._streams = counter(
            "tts_edge_streams",
            "Media Streams ended, by outcome.",
            *("business", "outcome", "fallback_reason"),
        )
        self._first_frame_s = histogram(
            "tts_edge_stream_first_frame_seconds",
            "From a Media Stream's start to its first audio frame sent.",
            FIRST_FRAME_BUCKETS,
            "business",
        )
        self._stream_audio_s = counter(
            "tts_edge_stream_audio_seconds", "Seconds of audio sent over Media Streams.", "business"
        )

    def webhook(self, event: WebhookEvent) -> None:
        business = event.business or UNKNOWN
        reason = event.fallback_reason or NONE
        self._webhooks.labels(
            business, event.route, str(event.status), event.response_type, reason
        ).inc()
        self._webhook_s.labels(business, event.route, event.response_type).observe(
            event.latency_ms / 1000
        )
        if event.worker_latency_ms is not None:
            self._worker_s.labels(business, event.route).observe(event.worker_latency_ms / 1000)
        if event.route == "voice" and event.response_type in ("play", "say"):
            self._greetings.labels(business, _greeting(event)).inc()

    def stream(self, event: StreamEvent) -> None:
        business = event.business or UNKNOWN
        self._streams.labels(business, event.outcome, event.fallback_reason or NONE).inc()
        if event.first_frame_ms is not None:
            self._first_frame_s.labels(business).observe(event.first_frame_ms / 1000)
        if event.audio_ms:
            self._stream_audio_s.labels(business).inc(event.audio_ms / 1000)


def _greeting(event: WebhookEvent) -> str:
    if event.response_type == "play":
        return "hit"
    return "miss" if event.fallback_reason == "not_cached" else "failed"
