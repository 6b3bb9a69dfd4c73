"""Collapse concurrent identical work: while one thread makes the audio for a cache key, other
threads asking for the same key wait for that result instead of synthesizing it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waiters = 0
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Thread-based single flight (after Go's ``singleflight``), keyed by string.

    Only calls that overlap are merged; once a call finishes its entry is dropped, so a later
    call runs ``fn`` again (the durable cache is the store, not this object).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight[T]] = {}

    def run(self, key: str, fn: Callable[[], T]) -> tuple[T, bool]:
        """``fn()``'s result and whether this caller ran it; a waiter gets the runner's result
        or the runner's exception re-raised."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                flight.waiters += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                # The same exception object, as concurrent.futures.Future.result() re-raises it.
                raise flight.error
            return cast(T, flight.result), False
        try:
            result = fn()
            flight.result = result
        except BaseException as exc:  # even KeyboardInterrupt: waiters must not hang
            flight.error = exc
            raise
        finally:
            # Drop the entry before waking waiters, so nobody can join a finished flight.
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return result, True

    def waiting(self, key: str) -> int:
        """How many callers are waiting on the flight for ``key`` now (0 when none runs)."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.waiters
