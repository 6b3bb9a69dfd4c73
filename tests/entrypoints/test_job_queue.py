"""The ``/run`` job store: its bound on jobs waiting or running, and which finished jobs it
forgets. A real worker (Piper behind a gate) runs the jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from serverless_tts.web.job_queue import JobQueue, QueuedJob
from shared.engines.base import Engine
from shared.errors import QueueFull
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext
from tests.engine_wrappers import GatedEngine

KEYLESS = {"text": "No key: fails at once, without the engine."}


@pytest.fixture
def engine(piper_engine: Engine) -> Iterator[GatedEngine]:
    gated = GatedEngine(piper_engine)
    yield gated
    gated.gate.set()


@pytest.fixture
def ctx(make_worker: Callable[[Engine], WorkerContext], engine: GatedEngine) -> WorkerContext:
    return make_worker(engine)  # type: ignore[arg-type]


def held_job(queue: JobQueue, ctx: WorkerContext, engine: GatedEngine) -> QueuedJob:
    key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
    job = queue.submit({"api_key": key, "text": "Held in the engine."})
    assert engine.entered.wait(timeout=60)
    return job


def ended(queue: JobQueue, job: QueuedJob) -> QueuedJob:
    deadline = time.monotonic() + 60
    while (now := queue.snapshot(job.id)) is not None and now.finished_at is None:
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.01)
    assert now is not None
    return now


def test_a_running_job_first_in_order_does_not_stop_eviction(
    ctx: WorkerContext, engine: GatedEngine
) -> None:
    queue = JobQueue(ctx, workers=2, max_active=3, max_stored=3)
    try:
        running = held_job(queue, ctx, engine)
        finished = []
        for _ in range(4):
            job = queue.submit(KEYLESS)
            assert ended(queue, job).status == "FAILED"
            finished.append(job)
        # Three are kept: the running job (never dropped) and the two newest finished ones.
        assert [queue.snapshot(job.id) is not None for job in finished] == [
            False,
            False,
            True,
            True,
        ]
        kept = queue.snapshot(running.id)
        assert kept is not None and kept.status == "IN_PROGRESS"
    finally:
        engine.gate.set()
        queue.shutdown()


def test_finished_jobs_past_retention_go_even_behind_a_running_job(
    ctx: WorkerContext, engine: GatedEngine
) -> None:
    queue = JobQueue(ctx, workers=2, max_active=10, retention_s=0.0)
    try:
        running = held_job(queue, ctx, engine)
        first = queue.submit(KEYLESS)
        ended(queue, first)
        second = queue.submit(KEYLESS)
        assert queue.snapshot(first.id) is None
        assert queue.snapshot(second.id) is not None and queue.snapshot(running.id) is not None
    finally:
        engine.gate.set()
        queue.shutdown()


def test_jobs_waiting_or_running_are_bounded(ctx: WorkerContext, engine: GatedEngine) -> None:
    queue = JobQueue(ctx, workers=1, max_active=2)
    try:
        running = held_job(queue, ctx, engine)
        waiting = queue.submit(KEYLESS)
        with pytest.raises(QueueFull):
            queue.submit(KEYLESS)
        engine.gate.set()
        assert ended(queue, running).status == "COMPLETED"
        ended(queue, waiting)
        queue.submit(KEYLESS)  # room again once they end
    finally:
        engine.gate.set()
        queue.shutdown()
