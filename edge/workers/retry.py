"""Bounded retries inside a call's deadline.

Only an attempt that cannot have done anything is tried again: nothing reached the worker (a
refused or timed-out connect), or the worker said it is overloaded (503, or 429 with a short
Retry-After). A retry that would end past the deadline of the enclosing cancel scope is not
started: the caller hears the failure at once instead of a timeout later.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio

from edge.workers.base import WorkerError

T = TypeVar("T")
# The first wait when the worker named none; it doubles with each retry.
FIRST_BACKOFF_S = 0.05


class Retryable(Exception):
    """A failed attempt that may be tried again: ``error`` is what the caller hears if it is
    not; ``after_s`` the wait the worker asked for (None: the default backoff)."""

    def __init__(self, error: WorkerError, after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.after_s = after_s


async def with_retries(attempt: Callable[[], Awaitable[T]], retries: int) -> T:
    """``attempt()``, again up to ``retries`` times while it raises ``Retryable``."""
    tried = 0
    while True:
        try:
            return await attempt()
        except Retryable as failed:
            wait_s = FIRST_BACKOFF_S * 2**tried if failed.after_s is None else failed.after_s
            if tried >= retries or not _fits(wait_s):
                raise failed.error from failed.__cause__
        tried += 1
        await anyio.sleep(wait_s)


@contextmanager
def deadline(timeout_s: float, what: str) -> Iterator[None]:
    """At most ``timeout_s`` for the block, retries included; ``WorkerError("timeout")`` after."""
    try:
        with anyio.fail_after(timeout_s):
            yield
    except TimeoutError as exc:
        raise WorkerError("timeout", f"{what}: no answer within {timeout_s:g} s") from exc


def _fits(wait_s: float) -> bool:
    end = anyio.current_effective_deadline()
    return math.isinf(end) or anyio.current_time() + wait_s < end
