"""The one HTTP app: what ``serverless-tts serve`` runs locally and Modal serves.

One router per surface: RunPod-compatible jobs (``/runsync``, ``/run``, ``/status/{id}``,
``/stream/{id}``), native v1 (``/v1/...``, Bearer keys), the WebSocket stream (``/v1/stream``),
OpenAI-compatible speech (``/v1/audio/speech``), the signed local audio, and the operator's
``/metrics`` (Prometheus, behind ``TTS_METRICS_TOKEN``). Routes only parse, call the dispatcher
and shape the reply; bodies above ``TTS_MAX_BODY_BYTES`` are refused before any route reads
them, and each surface refuses in its own clients' error shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware

from handlers.health import health
from serverless_tts.web import (
    audio_route,
    metrics_route,
    openai_routes,
    runpod_routes,
    v1_routes,
    v1_voices,
    ws_route,
)
from serverless_tts.web.body_limit import BodyLimit
from serverless_tts.web.errors import install_error_handlers
from serverless_tts.web.job_queue import JobQueue
from serverless_tts.web.openapi_doc import install_openapi
from serverless_tts.web.v1_audio import AUDIO_HEADERS
from serverless_tts.web.webhooks import Webhooks
from shared.config import load_settings
from shared.error_reports import init_worker_error_reports
from shared.jobs import HealthResult
from shared.worker import WorkerContext, build_worker


def create_app(
    ctx: WorkerContext | None = None, *, webhook_sleep: Callable[[float], None] = time.sleep
) -> FastAPI:
    """An app around ``ctx``, or around a worker built from the environment at startup;
    ``webhook_sleep`` waits between webhook attempts (tests record instead of waiting)."""
    settings = ctx.settings if ctx is not None else load_settings()
    init_worker_error_reports()  # with SENTRY_DSN only

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = ctx or await run_in_threadpool(build_worker, settings)
        webhooks = Webhooks.from_settings(settings, sleep=webhook_sleep)
        app.state.worker, app.state.storage, app.state.webhooks = worker, worker.storage, webhooks
        app.state.queue = JobQueue(
            worker,
            workers=settings.concurrency,
            max_active=settings.max_queued_jobs,
            webhooks=webhooks,
        )
        yield
        app.state.queue.shutdown()
        webhooks.close()  # after the queue: its last jobs' webhooks still go out
        if ctx is None:
            worker.close()

    app = FastAPI(title="serverless-tts", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, routes=v1_voices.BODY_BOUNDS)
    if settings.cors_origin_list:  # off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=list(AUDIO_HEADERS),
        )
    install_error_handlers(app)
    app.include_router(runpod_routes.router)
    app.include_router(v1_routes.router)
    app.include_router(v1_voices.router)
    app.include_router(ws_route.router)
    app.include_router(openai_routes.router)
    app.include_router(audio_route.router)
    app.include_router(metrics_route.router)
    install_openapi(app)

    @app.get("/health")
    async def health_route(request: Request) -> HealthResult:
        return health(request.app.state.worker)

    return app
