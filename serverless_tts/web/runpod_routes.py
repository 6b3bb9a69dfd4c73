"""RunPod's job routes: ``/runsync``, ``/run``, ``/status/{id}``, ``/stream/{id}``.

A client written for RunPod's API can point at this app unchanged. ``/status`` and ``/stream``
answer GET as well as RunPod's POST, each method with its own OpenAPI operation id (one
``api_route`` for both would give them one id, and FastAPI warns of the duplicate).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from handlers.dispatch import authenticate
from serverless_tts.runpod_shapes import error_string, run_job, take_credentials
from serverless_tts.web.envelope import OPENAPI_BODY, RunRequest, read_envelope
from serverless_tts.web.job_queue import JobQueue, status_body
from shared.errors import TTSError
from shared.worker import WorkerContext

router = APIRouter()


async def _admit(envelope: RunRequest, request: Request) -> None:
    """What holds before a job is accepted: a valid key (no keyless job takes a place in the
    queue or makes the server call anyone), and a webhook the server may reach."""
    credentials, _ = take_credentials(envelope.input)
    await run_in_threadpool(authenticate, credentials, request.app.state.worker)
    if envelope.webhook is not None:
        await run_in_threadpool(request.app.state.webhooks.check, envelope.webhook)


@router.post("/runsync", openapi_extra=OPENAPI_BODY)
async def runsync(request: Request) -> dict[str, Any]:
    envelope = await read_envelope(request)
    if envelope.webhook is not None:
        await _admit(envelope, request)  # without one, a bad key answers in RunPod's shape
    worker: WorkerContext = request.app.state.worker
    job_id = f"sync-{uuid.uuid4().hex}"
    reply: dict[str, Any]
    try:
        output = await run_in_threadpool(run_job, envelope.input, worker, job_id=job_id)
    except TTSError as err:
        reply = {"id": job_id, "status": "FAILED", "error": error_string(err)}
    else:
        reply = {"id": job_id, "status": "COMPLETED", "output": output}
    if envelope.webhook is not None:
        request.app.state.webhooks.send(envelope.webhook, reply, job_id=job_id)
    return reply


@router.post("/run", openapi_extra=OPENAPI_BODY)
async def run(request: Request) -> dict[str, Any]:
    envelope = await read_envelope(request)
    # The job authenticates again when it runs (from the store's cache), then is charged.
    await _admit(envelope, request)
    queue: JobQueue = request.app.state.queue
    job = queue.submit(envelope.input, webhook=envelope.webhook)
    return {"id": job.id, "status": job.status}


@router.get("/status/{job_id}", operation_id="status_get")
@router.post("/status/{job_id}", operation_id="status_post")
async def status(job_id: str, request: Request) -> dict[str, Any]:
    job = request.app.state.queue.snapshot(job_id)
    if job is None:
        raise HTTPException(404, detail="no such job")
    return status_body(job)


@router.get("/stream/{job_id}", operation_id="stream_get")
@router.post("/stream/{job_id}", operation_id="stream_post")
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
