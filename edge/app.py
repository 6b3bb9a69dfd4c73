"""The edge's ASGI app: Twilio's webhooks under ``/twilio/{business}/`` and the platform's
``GET /health``. Serve it anywhere ASGI runs (``serverless-tts edge serve``, Modal, uvicorn).

- ``POST voice``: an incoming call, greeted at once (the cached greeting, or ``<Say>``).
- ``POST gather``: a caller's turn, answered by the business's responder and spoken in its
  mode (``play``: ``<Play>`` under the deadline; ``stream``: a Media Stream).
- ``POST continue``: where a streamed turn carries on.
- ``POST say``: text an app already has, as TwiML.
- ``WS media``: the Media Stream of a streamed turn.

And ``GET /metrics``, the operator's Prometheus figures, behind the token ``metrics_token_env``
names (without it: 404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from edge import calls
from edge.config import EdgeSettings
from edge.metrics import EdgeMetrics
from edge.routes import health, media, metrics, webhook
from edge.state import EdgeState
from edge.workers.base import WorkerClient


def create_edge_app(
    settings: EdgeSettings, worker: WorkerClient, *, registry: CollectorRegistry | None = None
) -> Starlette:
    """The app, its state on ``app.state.edge`` (counters included), its Prometheus figures on
    ``registry`` (default: one of its own). It owns ``worker``: the client is closed, and work
    left running is cancelled, when the app shuts down."""
    edge = EdgeState.build(settings, worker, metrics=EdgeMetrics(registry))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await edge.aclose()

    prefix = "/twilio/{business}"
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route(f"{prefix}/voice", webhook("voice", calls.voice), methods=["POST"]),
            Route(f"{prefix}/gather", webhook("gather", calls.gather), methods=["POST"]),
            Route(f"{prefix}/continue", webhook("continue", calls.carry_on), methods=["POST"]),
            Route(f"{prefix}/say", webhook("say", calls.say, allow_json=True), methods=["POST"]),
            WebSocketRoute(f"{prefix}/media", media),
        ],
        lifespan=lifespan,
    )
    app.state.edge = edge
    return app
