"""The local web app (and what Modal serves): RunPod-compatible job routes, health, signed audio.

A client written for RunPod's API (``/runsync``, ``/run``, ``/status/{id}``, ``/stream/{id}``)
can point at ``http://127.0.0.1:8000`` unchanged. Routes only parse, call a handler and shape
the reply.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from handlers.dispatch import run_job
from handlers.health import health
from serverless_tts.web.job_queue import JobQueue
from shared.errors import NotFound, TTSError
from shared.jobs import HealthResult, error_string
from shared.storage.local import AUDIO_ROUTE, LocalAudioStore, UrlRefused
from shared.worker import WorkerContext, build_worker


class RunRequest(BaseModel):
    """RunPod's request body: the job is under ``input``."""

    model_config = ConfigDict(extra="ignore")

    input: dict[str, Any]
    webhook: None = Field(None, description="Webhooks are not sent by the local API.")


def create_app(ctx: WorkerContext | None = None) -> FastAPI:
    """An app around ``ctx``, or around a worker built from the environment at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = ctx or await run_in_threadpool(build_worker)
        app.state.worker = worker
        app.state.queue = JobQueue(worker, workers=worker.settings.concurrency)
        yield
        app.state.queue.shutdown()
        if ctx is None:
            worker.close()

    app = FastAPI(title="serverless-tts", lifespan=lifespan)

    @app.post("/runsync")
    async def runsync(body: RunRequest, request: Request) -> dict[str, Any]:
        worker: WorkerContext = request.app.state.worker
        job_id = f"sync-{uuid.uuid4().hex}"
        try:
            output = await run_in_threadpool(run_job, body.input, worker, job_id=job_id)
        except TTSError as err:
            return {"id": job_id, "status": "FAILED", "error": error_string(err)}
        return {"id": job_id, "status": "COMPLETED", "output": output}

    @app.post("/run")
    async def run(body: RunRequest, request: Request) -> dict[str, Any]:
        job = request.app.state.queue.submit(body.input)
        return {"id": job.id, "status": job.status}

    @app.api_route("/status/{job_id}", methods=["GET", "POST"])
    async def status(job_id: str, request: Request) -> dict[str, Any]:
        job = request.app.state.queue.snapshot(job_id)
        if job is None:
            raise HTTPException(404, detail="no such job")
        reply: dict[str, Any] = {"id": job.id, "status": job.status}
        if job.status == "COMPLETED":
            reply["output"] = job.items
        if job.error is not None:
            reply["error"] = job.error
        return reply

    @app.api_route("/stream/{job_id}", methods=["GET", "POST"])
    async def stream(job_id: str, request: Request) -> dict[str, Any]:
        taken = request.app.state.queue.take_new_items(job_id)
        if taken is None:
            raise HTTPException(404, detail="no such job")
        job, items = taken
        reply: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "stream": [{"output": item} for item in items],
        }
        if job.error is not None:
            reply["error"] = job.error
        return reply

    @app.get("/health")
    async def health_route(request: Request) -> HealthResult:
        return health(request.app.state.worker)

    @app.get(AUDIO_ROUTE + "{key:path}")
    async def audio(key: str, request: Request, expires: str = "", sig: str = "") -> FileResponse:
        storage = request.app.state.worker.storage
        if not isinstance(storage, LocalAudioStore):
            raise HTTPException(404, detail="audio is served by the configured object store")
        try:
            path = storage.open_signed(key, expires, sig)
        except UrlRefused as exc:
            raise HTTPException(403, detail=str(exc)) from None
        except NotFound as exc:
            raise HTTPException(404, detail=exc.message) from None
        return FileResponse(path, media_type=storage.content_type(key))

    return app
