"""Usage logging off the hot path: jobs hand rows to a queue; one thread writes them in batches.

A failed batch is retried with backoff until the database is back, so rows made while it is down
arrive later (within the process's life). Writes are idempotent on (tenant, request id), so a
retried batch never counts twice. Only a full queue drops rows, and those are counted.
``close`` drains the queue: a graceful shutdown drops nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from shared.errors import AuthUnavailable, InternalError
from shared.tenants.base import UsageRecord

_log = logging.getLogger(__name__)
# Failures that pass: the database or the network is away. The stores translate theirs to these.
RETRIED_ERRORS: tuple[type[Exception], ...] = (AuthUnavailable, InternalError, OSError)
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
        self._queue: queue.Queue[UsageRecord] = queue.Queue()
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def record(self, row: UsageRecord) -> None:
        """Queue one row; never blocks the job."""
        if self.pending >= self._max_pending:
            self.dropped += 1
            _log.error("usage queue full: dropped a row for request %s", row.request_id)
            return
        self._queue.put_nowait(row)

    @property
    def pending(self) -> int:
        """Rows queued or being written (the queue counts a row until its batch is done)."""
        return self._queue.unfinished_tasks

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
        flushed = self.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout=5)
        if not flushed:
            self.dropped += self.pending
            _log.error("usage writer closed with %d rows unwritten", self.pending)

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
            with self._idle:
                for _ in batch:
                    self._queue.task_done()
                self._idle.notify_all()

    def _write_until_done(self, batch: list[UsageRecord]) -> None:
        delay = self._retry_initial_s
        while True:
            try:
                self._write_batch(batch)
            except RETRIED_ERRORS as exc:
                _log.warning("usage write of %d rows failed (%s); retrying", len(batch), exc)
                if self._stopping.wait(delay):
                    self.dropped += len(batch)
                    return
                delay = min(delay * 2, self._retry_max_s)
            except Exception:
                # A row the database will never take (a deleted tenant, a broken row) must not
                # hold up the rows behind it: write one at a time and drop only what fails.
                self._write_each(batch)
                return
            else:
                self.written += len(batch)
                return

    def _write_each(self, batch: list[UsageRecord]) -> None:
        for row in batch:
            try:
                self._write_batch([row])
            except Exception:
                self.dropped += 1
                _log.exception("usage row for request %s refused; dropped", row.request_id)
            else:
                self.written += 1
