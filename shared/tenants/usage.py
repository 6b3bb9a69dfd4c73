"""Usage logging off the hot path: jobs hand rows to a queue; one thread writes them in batches.

A batch that fails for a passing reason (the database or the network is away) is retried with
backoff until the database is back, so rows made while it is down arrive later (within the
process's life). Writes are idempotent on (tenant, job id), so a retried batch never counts
twice. A batch refused for any other reason is written one row at a time, and only the rows the
database refuses are dropped. A full queue drops rows too. Every dropped row is counted.
``close`` drains the queue: a graceful shutdown drops nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from shared.errors import AuthUnavailable
from shared.tenants.base import UsageRecord

_log = logging.getLogger(__name__)
# Failures that pass: the stores raise AuthUnavailable only for those (InternalError means the
# database refused the rows, and retrying them would block every row behind them for good).
RETRIED_ERRORS: tuple[type[Exception], ...] = (AuthUnavailable, OSError)
WriteBatch = Callable[[Sequence[UsageRecord]], None]


class UsageWriter:
    def __init__(
        self,
        write_batch: WriteBatch,
        *,
        max_batch: int = 200,
        max_pending: int = 100_000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_pending = max_pending
        # SimpleQueue and an RLock: ``record`` may run inside a finalizer (a stream collected
        # unread), possibly on a thread already inside ``record``, where a plain lock or
        # queue.Queue's mutex would deadlock it.
        self._queue: queue.SimpleQueue[UsageRecord] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        # Jobs' threads and the writer's thread all count; the lock also makes the check of the
        # bound and the count of a queued row one step, so the bound holds exactly.
        self._counts = threading.RLock()
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        with self._counts:
            return self._written

    @property
    def dropped(self) -> int:
        with self._counts:
            return self._dropped

    def record(self, row: UsageRecord) -> None:
        """Queue one row; never blocks the job."""
        with self._counts:
            stopped = self._stopping.is_set()
            if not stopped and self._pending < self._max_pending:
                self._pending += 1
                self._queue.put(row)
                return
            self._dropped += 1
        reason = "the writer is closed" if stopped else "usage queue full"
        _log.error("%s: dropped the row of job %s", reason, row.job_id)

    @property
    def pending(self) -> int:
        """Rows queued or being written (a row counts until its batch is done)."""
        with self._counts:
            return self._pending

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued row is written; False if that took longer than timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.1))
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)
        with self._counts:  # from here on, record() counts rows as dropped
            self._stopping.set()
        self._thread.join(timeout=5)
        with self._counts:
            unwritten, self._pending = self._pending, 0
            self._dropped += unwritten
        if unwritten:
            _log.error("usage writer closed with %d rows unwritten", unwritten)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write_until_done(batch)
            with self._counts:
                self._pending -= len(batch)
            with self._idle:
                self._idle.notify_all()

    def _write_until_done(self, batch: list[UsageRecord]) -> None:
        delay = self._retry_initial_s
        while True:
            try:
                self._write_batch(batch)
            except RETRIED_ERRORS as exc:
                _log.warning("usage write of %d rows failed (%s); retrying", len(batch), exc)
                if self._stopping.wait(delay):
                    self._count(dropped=len(batch))
                    return
                delay = min(delay * 2, self._retry_max_s)
            except Exception:
                self._refused(batch)
                return
            else:
                self._count(written=len(batch))
                return

    def _refused(self, batch: list[UsageRecord]) -> None:
        """A row the database will never take (a deleted tenant, a broken row) must not hold
        up the rows beside it: write them one at a time and drop only what is refused."""
        if len(batch) > 1:
            for row in batch:
                self._write_until_done([row])
            return
        self._count(dropped=1)
        _log.exception("usage row of job %s refused; dropped", batch[0].job_id)

    def _count(self, *, written: int = 0, dropped: int = 0) -> None:
        with self._counts:
            self._written += written
            self._dropped += dropped
