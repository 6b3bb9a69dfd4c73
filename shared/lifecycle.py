"""A worker's lifecycle: whether it takes new jobs, how many it is running, and whether it can
be trusted at all.

A graceful shutdown (SIGTERM) first drains: new jobs are refused with a retryable
``ShuttingDown`` (a caller, or the platform's balancer, goes to another worker) while the jobs
already admitted run to their end, for at most the grace period; only then do the engines stop
and the usage rows get flushed. A fault (a device error seen outside an engine's runner) is for
good: only a new process clears it, so the platform is asked for one.
"""

from __future__ import annotations

import threading
import time

from shared.errors import ShuttingDown


class Lifecycle:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._draining = False
        self._fault: str | None = None

    @property
    def draining(self) -> bool:
        with self._cond:
            return self._draining

    @property
    def active(self) -> int:
        with self._cond:
            return self._active

    @property
    def fault(self) -> str | None:
        with self._cond:
            return self._fault

    def fail(self, reason: str) -> None:
        """Mark the worker untrusted (the first reason is kept)."""
        with self._cond:
            self._fault = self._fault or reason

    def admit(self) -> None:
        """Count a job in; ``ShuttingDown`` once draining. A refused job is counted too, so
        every ``admit`` pairs with one ``release`` whatever it raised."""
        with self._cond:
            self._active += 1
            if self._draining:
                raise ShuttingDown("the worker is shutting down; retry on another worker")

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def drain(self, grace_s: float) -> bool:
        """Refuse new jobs, then wait up to ``grace_s`` for the admitted ones to end; False if
        some were still running when the grace ran out."""
        deadline = time.monotonic() + grace_s
        with self._cond:
            self._draining = True
            while self._active > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
