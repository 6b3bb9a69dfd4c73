"""The edge for any ASGI host: ``uvicorn edge.asgi:app`` (or gunicorn with uvicorn workers)
builds it from ``TTS_EDGE_CONFIG`` and the environment's secrets when the host asks for
``app``; ``serverless-tts edge serve`` and Modal's edge function build it the same way. Error
reports go to Sentry when ``SENTRY_DSN`` is set."""

from __future__ import annotations

from typing import Any

from edge.config import EdgeSettings, load_edge_settings
from edge.error_reports import init_error_reports
from edge.events import configure_edge_logging


def edge_app(settings: EdgeSettings | None = None) -> Any:
    """The edge's ASGI app for ``settings`` (default: read from the environment), its events
    logged to stdout, its errors reported to Sentry with ``SENTRY_DSN``."""
    from edge.app import create_edge_app
    from edge.workers.build import build_worker_client

    settings = settings or load_edge_settings()
    configure_edge_logging()
    init_error_reports()
    return create_edge_app(settings, build_worker_client(settings))


def __getattr__(name: str) -> Any:
    # Built when the host looks it up, not at import: importing this module reads nothing.
    if name == "app":
        return edge_app()
    raise AttributeError(name)
