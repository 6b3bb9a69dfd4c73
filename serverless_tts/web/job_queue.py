"""Jobs queued by ``/run``: run on a small thread pool, their items kept for ``/status`` and
``/stream`` polling, as RunPod keeps ``/run`` results (30 minutes there, bounded here).

A job is admitted to the worker's lifecycle when it is queued, not when it starts: a shutdown's
drain waits for every job this queue accepted, and one queued before SIGTERM still runs; once
draining, ``submit`` refuses (503, shutting down)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from serverless_tts.runpod_shapes import JobItem, error_string, start_job
from serverless_tts.web.webhooks import Webhooks
from shared.errors import EngineUnavailable, InternalError, QueueFull, TTSError
from shared.lifecycle import Admission
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)
# The Retry-After a full queue answers: a hint for clients to back off, not a promise.
RETRY_AFTER_S = 5
JobStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED"]


@dataclass
class QueuedJob:
    id: str
    status: JobStatus = "IN_QUEUE"
    items: list[JobItem] = field(default_factory=list)
    error: str | None = None
    streamed: int = 0
    finished_at: float | None = None
    webhook: str | None = None


def status_body(job: QueuedJob) -> dict[str, Any]:
    """What ``/status/{id}`` answers, and what a webhook receives when the job ends."""
    body: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.status == "COMPLETED":
        body["output"] = job.items
    if job.error is not None:
        body["error"] = job.error
    return body


class JobQueue:
    """``max_active`` bounds the jobs waiting or running (a burst is refused, not buffered
    without limit); ``max_stored`` bounds all kept jobs, finished ones included."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        workers: int,
        max_active: int,
        retention_s: float = 1800.0,
        max_stored: int = 10_000,
        webhooks: Webhooks | None = None,
    ) -> None:
        if max_active > max_stored:
            raise ValueError("max_active must not exceed max_stored: active jobs are never evicted")
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tts-job")
        self._jobs: dict[str, QueuedJob] = {}
        # Finished jobs in the order they finished: the oldest is always first, so eviction
        # stops at the first job it keeps and never walks past running ones.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._retention_s = retention_s
        self._max_active = max_active
        self._max_stored = max_stored
        self._webhooks = webhooks

    def submit(self, raw_input: object, *, webhook: str | None = None) -> QueuedJob:
        """Queue a job; its ``webhook`` hears the final status (through this queue's
        ``webhooks``). ``QueueFull`` when ``max_active`` jobs are already waiting or running;
        ``ShuttingDown`` once the worker drains."""
        job = QueuedJob(id=f"local-{uuid.uuid4().hex}", webhook=webhook)
        with self._lock:
            # Jobs waiting or running are the kept jobs that have not finished.
            if len(self._jobs) - len(self._finished) >= self._max_active:
                raise QueueFull(
                    f"the queue is full (at most {self._max_active} jobs waiting or running); "
                    f"retry in {RETRY_AFTER_S} s",
                    retry_after_s=RETRY_AFTER_S,
                )
            admission = self._ctx.lifecycle.admit_ahead()
            self._forget_old()
            self._jobs[job.id] = job
        try:
            future = self._pool.submit(self._run, job, raw_input, admission)
        except RuntimeError:  # the pool is shut down: the app is stopping
            with self._lock:
                del self._jobs[job.id]
            admission.cancel()
            raise EngineUnavailable("the worker is shutting down") from None
        # A job the pool's shutdown cancels before it ran gives its count back here (a no-op
        # once its run has ended the count).
        future.add_done_callback(lambda _: admission.cancel())
        return job

    def snapshot(self, job_id: str) -> QueuedJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else replace(job, items=list(job.items))

    def take_new_items(self, job_id: str) -> tuple[QueuedJob, list[JobItem]] | None:
        """Items produced since the previous call: RunPod's ``/stream`` polling contract."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            new = job.items[job.streamed :]
            job.streamed = len(job.items)
            return job, new

    def shutdown(self) -> None:
        """Stop the pool; a job still waiting then (the drain's grace ran out) never runs and
        leaves the lifecycle's count (its future's callback)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: QueuedJob, raw_input: object, admission: Admission) -> None:
        with self._lock:
            job.status = "IN_PROGRESS"
        try:
            with admission.running():
                for item in start_job(raw_input, self._ctx, job_id=job.id):
                    with self._lock:
                        job.items.append(item)
        except TTSError as err:
            self._end(job, "FAILED", error_string(err))
        except Exception:
            # The dispatcher turns every failure into a TTSError; should one slip through, the
            # job still ends, or its place in the bound would be taken for good.
            _log.exception("job %s failed unexpectedly", job.id)
            self._end(job, "FAILED", error_string(InternalError("the worker failed this job")))
        else:
            self._end(job, "COMPLETED", None)

    def _end(self, job: QueuedJob, status: JobStatus, error: str | None) -> None:
        with self._lock:
            job.status, job.error, job.finished_at = status, error, time.monotonic()
            self._finished[job.id] = None
            body = status_body(replace(job, items=list(job.items)))
        if job.webhook is not None and self._webhooks is not None:
            self._webhooks.send(job.webhook, body, job_id=job.id)

    def _forget_old(self) -> None:
        """Drop finished jobs past retention, then the oldest finished ones while the store is
        full; a job waiting or running is never dropped (its client is still polling)."""
        horizon = time.monotonic() - self._retention_s
        while self._finished:
            oldest = self._jobs[next(iter(self._finished))]
            assert oldest.finished_at is not None
            if oldest.finished_at >= horizon and len(self._jobs) < self._max_stored:
                return
            del self._finished[oldest.id], self._jobs[oldest.id]
