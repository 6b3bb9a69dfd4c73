"""Work a webhook stopped waiting for, left to finish so its audio lands in the worker's cache:
a synthesis past the deadline, a greeting being warmed.

The event loop keeps only weak references to tasks, so one nobody holds can vanish mid-run;
this holds each until it ends, logs how a failed one failed (never its text), and runs at most
one task per key (one warm job per greeting, however many calls come in meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from edge.workers.base import WorkerError

T = TypeVar("T")
_log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keyed: dict[str, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def keep(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def once(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The task under way for ``key``, or a new one from ``start()``."""
        running = self._keyed.get(key)
        if running is not None:
            return running
        task = self.keep(asyncio.create_task(start(), name=key))
        self._keyed[key] = task
        task.add_done_callback(lambda _: self._keyed.pop(key, None))
        return task

    async def aclose(self) -> None:
        """Cancel what is still running (the server is stopping) and wait for it to stop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved, so asyncio never reports it as lost
        if isinstance(error, WorkerError):
            _log.warning("background worker call failed: %s", error.reason)
        elif error is not None:
            _log.error("background worker call failed", exc_info=error)
