"""A worker's lifecycle: whether it takes new jobs, how many it is running, and whether it can
be trusted at all.

A graceful shutdown (SIGTERM) first drains: new jobs are refused with a retryable
``ShuttingDown`` (a caller, or the platform's balancer, goes to another worker) while the jobs
already admitted run to their end, for at most the grace period; only then do the engines stop
and the usage rows get flushed. A fault (a device error seen outside an engine's runner) is for
good: only a new process clears it, so the platform is asked for one.

A job a transport accepted to run later (a queued ``/run`` job) is admitted when it is accepted
(``admit_ahead``), not when it starts: the caller was told it would run, so the drain waits for
it, and its dispatch, run inside ``Admission.running``, takes that admission instead of being
refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
        every ``admit`` pairs with one ``release`` whatever it raised. Inside
        ``Admission.running`` the first ``admit`` takes that admission: counted already."""
        ahead = _AHEAD.get()
        with self._cond:
            if ahead is not None and ahead.lifecycle is self and not ahead.taken:
                ahead.taken = True  # its job's release ends the count
                return
            self._active += 1
            if self._draining:
                raise ShuttingDown("the worker is shutting down; retry on another worker")

    def admit_ahead(self) -> Admission:
        """Count in a job that will run later; ``ShuttingDown`` (nothing counted) once
        draining. Run the job inside the admission's ``running``, or ``cancel`` it."""
        with self._cond:
            if self._draining:
                raise ShuttingDown("the worker is shutting down; retry on another worker")
            self._active += 1
        return Admission(self)

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


class Admission:
    """A job counted in ahead of its run (``Lifecycle.admit_ahead``); ``taken`` once the job's
    dispatch has admitted on it (its release then ends the count)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.taken = False

    @contextmanager
    def running(self) -> Iterator[None]:
        """Run the job here: its dispatch's ``admit`` takes this admission even while the
        worker drains; one never taken is given back at the end."""
        token = _AHEAD.set(self)
        try:
            yield
        finally:
            _AHEAD.reset(token)
            self.cancel()

    def cancel(self) -> None:
        """Give the count back, unless the job's dispatch took it."""
        with self.lifecycle._cond:
            if self.taken:
                return
            self.taken = True
        self.lifecycle.release()


# The admission the job running in this context was accepted on (None: none).
_AHEAD: ContextVar[Admission | None] = ContextVar("admitted_ahead", default=None)
