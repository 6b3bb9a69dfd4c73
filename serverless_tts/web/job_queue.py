"""Jobs queued by ``/run``: run on a small thread pool, their items kept for ``/status`` and
``/stream`` polling, as RunPod keeps ``/run`` results (30 minutes there, bounded here)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from handlers.dispatch import JobItem, start_job
from shared.errors import TTSError
from shared.jobs import error_string
from shared.worker import WorkerContext

JobStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED"]


@dataclass
class QueuedJob:
    id: str
    status: JobStatus = "IN_QUEUE"
    items: list[JobItem] = field(default_factory=list)
    error: str | None = None
    streamed: int = 0
    finished_at: float | None = None


class JobQueue:
    def __init__(
        self,
        ctx: WorkerContext,
        *,
        workers: int,
        retention_s: float = 1800.0,
        max_jobs: int = 10_000,
    ) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tts-job")
        self._jobs: OrderedDict[str, QueuedJob] = OrderedDict()
        self._lock = threading.Lock()
        self._retention_s = retention_s
        self._max_jobs = max_jobs

    def submit(self, raw_input: object) -> QueuedJob:
        job = QueuedJob(id=f"local-{uuid.uuid4().hex}")
        with self._lock:
            self._forget_old()
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, raw_input)
        return job

    def snapshot(self, job_id: str) -> QueuedJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            return QueuedJob(
                id=job.id,
                status=job.status,
                items=list(job.items),
                error=job.error,
                streamed=job.streamed,
                finished_at=job.finished_at,
            )

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
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: QueuedJob, raw_input: object) -> None:
        with self._lock:
            job.status = "IN_PROGRESS"
        try:
            for item in start_job(raw_input, self._ctx, job_id=job.id):
                with self._lock:
                    job.items.append(item)
        except TTSError as err:
            self._end(job, "FAILED", error_string(err))
        else:
            self._end(job, "COMPLETED", None)

    def _end(self, job: QueuedJob, status: JobStatus, error: str | None) -> None:
        with self._lock:
            job.status, job.error, job.finished_at = status, error, time.monotonic()

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self._retention_s
        for job_id, job in list(self._jobs.items()):
            finished_long_ago = job.finished_at is not None and job.finished_at < horizon
            if finished_long_ago or len(self._jobs) >= self._max_jobs:
                if job.finished_at is None:
                    break  # never drop a job that is still running
                del self._jobs[job_id]
