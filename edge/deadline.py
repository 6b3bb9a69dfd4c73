"""Waiting for the worker no longer than a webhook can afford.

The wait ends at the deadline, but the call is not cancelled here: the caller decides whether
it is worth finishing (a synthesis is: its audio is cached for the next caller) or not (a cache
lookup is not). Whatever the worker does, the outcome is a value or a reason, never an
exception, so every branch still answers TwiML.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge.workers.base import WorkerError

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerOutcome(Generic[T]):
    """``value`` when the worker answered in time; else None and ``fallback_reason``
    (``deadline``, or ``worker_<reason>`` of its ``WorkerError``). ``latency_ms``: how long
    the worker took, when it answered (or failed) within the wait."""

    value: T | None
    latency_ms: float | None = None
    fallback_reason: str | None = None


async def wait_for_worker(task: asyncio.Task[T], timeout_s: float) -> WorkerOutcome[T]:
    started = time.perf_counter()
    done, _ = await asyncio.wait({task}, timeout=max(timeout_s, 0.0))
    if not done:
        return WorkerOutcome(None, fallback_reason="deadline")
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    try:
        return WorkerOutcome(task.result(), latency_ms)
    except WorkerError as exc:
        return WorkerOutcome(None, latency_ms, f"worker_{exc.reason}")
    except Exception:  # a client bug must not cost the caller their answer
        _log.exception("the worker client raised something other than WorkerError")
        return WorkerOutcome(None, latency_ms, "worker_failed")
