"""Helpers for the web app's tests: serve an app on loopback, hold jobs in the engine, read the
job events the dispatcher logs, and poll a queued job to its end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines.base import Engine
from shared.telemetry import JOB_LOGGER
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.servers import free_port, wait_for_port


@contextmanager
def serve(app: FastAPI, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a thread, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Served:
    """A running app: a client for it and the worker behind it."""

    http: httpx.Client
    ctx: WorkerContext

    def new_key(self) -> str:
        return self.ctx.tenants.create_tenant("acme", UNLIMITED).api_key


Start = Callable[..., Served]


def start_app(stack: ExitStack, settings: Settings, engine: Engine, **app_options: Any) -> Served:
    """A worker on ``settings`` (its public URL pointed at the app), served until ``stack``
    closes; ``app_options`` go to ``create_app``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = build_worker(settings.model_copy(update={"public_base_url": base}), engine=engine)
    stack.callback(ctx.close)
    stack.enter_context(serve(create_app(ctx, **app_options), port))
    http = stack.enter_context(httpx.Client(base_url=base, timeout=120))
    return Served(http, ctx)


def job_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == JOB_LOGGER]


def until_done(http: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """``/status`` of a queued job once it has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = http.get(f"/status/{job_id}").json()
        if status["status"] in {"COMPLETED", "FAILED"}:
            return status
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not end within {timeout_s} s")
