"""Renders of an I/O-bound engine (a vendor API), each read on a thread of its own.

A vendor request spends its time waiting on the network, not computing. On the engine thread
(``shared.engines.runner``) every render of an engine takes turns, so one vendor answer slow to
come would hold every other job's step of that engine for as long as the vendor takes. Here
each render reads on its own thread, so requests overlap, at most ``max_concurrent`` at once:
more would only earn the vendor's 429 (a plan's concurrency); the rest wait their turn.

As on the engine thread, a render runs at most ``queue_chunks`` chunks ahead of its reader, and
closing (or dropping) its stream cancels it; the render's generator is closed on its own thread,
which closes the vendor connection it holds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from shared.engines.base import Engine, Pcm
from shared.engines.runner import DEFAULT_QUEUE_CHUNKS, RenderCancelled, Step
from shared.errors import EngineUnavailable

_log = logging.getLogger(__name__)
_END = object()


@dataclass(eq=False)
class _Render:
    steps: Iterator[Step]
    label: str
    queue: deque[object] = field(default_factory=deque)
    cancelled: bool = False
    done: bool = False


class ConcurrentRunner:
    """The runner of an engine whose calls wait on I/O: ``submit`` from any thread."""

    def __init__(
        self, engine: Engine, *, max_concurrent: int, queue_chunks: int = DEFAULT_QUEUE_CHUNKS
    ) -> None:
        if max_concurrent < 1 or queue_chunks < 1:
            raise ValueError("max_concurrent and queue_chunks must be at least 1")
        self.engine = engine
        self._limit = max_concurrent
        self._queue_chunks = queue_chunks
        self._cond = threading.Condition()
        self._renders: dict[_Render, threading.Thread] = {}
        self._running = 0
        self._closing = False

    def submit(self, steps: Iterator[Step], *, label: str = "") -> ThreadedStream:
        """Start a render on a thread of its own; it waits there while ``max_concurrent``
        others are reading."""
        render = _Render(steps=steps, label=label)
        thread = threading.Thread(
            target=self._run, args=(render,), name=f"engine-{self.engine.name}", daemon=True
        )
        with self._cond:
            if self._closing:
                raise EngineUnavailable("the worker is shutting down")
            self._renders[render] = thread
        thread.start()
        return ThreadedStream(self, render)

    @property
    def active(self) -> int:
        """Renders submitted and not yet finished or cancelled."""
        with self._cond:
            return len(self._renders)

    # The engine thread's fault bounds (``EngineRunner.limit``) do not apply here: every wait
    # on a vendor is bounded by its read timeout (TTS_VENDOR_READ_TIMEOUT_S), which fails that
    # call over; and a slow or failing vendor is its breaker's business, never a reason to
    # call this worker unhealthy or to replace it.

    def limit(self, *, step_timeout_s: float | None, hung_s: float | None) -> None:
        """Accepted for the runner protocol; see above."""

    @property
    def stalled(self) -> bool:
        return False

    @property
    def fault(self) -> str | None:
        return None

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel every render; wait (up to ``timeout_s`` each) for their threads to stop."""
        with self._cond:
            self._closing = True
            threads = list(self._renders.values())
            for render in self._renders:
                render.cancelled = True
                # A reader still waiting must learn its audio is cut short, not see an end.
                render.queue.append(EngineUnavailable("the worker is shutting down"))
            self._cond.notify_all()
        for thread in threads:
            thread.join(timeout=timeout_s)

    # --- the reader's side ---------------------------------------------------------------

    def _take(self, render: _Render) -> object:
        with self._cond:
            while not render.queue:
                if render.cancelled:
                    raise RenderCancelled
                if render.done:
                    return _END
                self._cond.wait()
            item = render.queue.popleft()
            self._cond.notify_all()  # room on this render's queue: it may read on
            return item

    def _cancel(self, render: _Render) -> None:
        with self._cond:
            if not render.done:
                render.cancelled = True
                self._cond.notify_all()

    # --- each render's thread ------------------------------------------------------------

    def _run(self, render: _Render) -> None:
        try:
            if self._wait_for_slot(render):
                try:
                    self._read(render)
                finally:
                    with self._cond:
                        self._running -= 1
                        self._cond.notify_all()
        finally:
            _close_quietly(render)
            with self._cond:
                render.done = True
                del self._renders[render]
                self._cond.notify_all()

    def _wait_for_slot(self, render: _Render) -> bool:
        """True once this render may read; False when it was cancelled while it waited."""
        with self._cond:
            while self._running >= self._limit and not render.cancelled:
                self._cond.wait()
            if render.cancelled:
                return False
            self._running += 1
            return True

    def _read(self, render: _Render) -> None:
        while True:
            with self._cond:
                while len(render.queue) >= self._queue_chunks and not render.cancelled:
                    self._cond.wait()
                if render.cancelled:
                    return
            try:
                step = next(render.steps)
            except StopIteration:
                self._put(render, _END)
                return
            except BaseException as exc:
                self._put(render, exc)
                return
            if step.pcm is not None:
                self._put(render, step.pcm)
            if step.last:
                self._put(render, _END)
                return

    def _put(self, render: _Render, item: object) -> None:
        with self._cond:
            render.queue.append(item)
            self._cond.notify_all()


class ThreadedStream:
    """The reading end of one render: iterate for PCM; ``close`` (or dropping it) cancels."""

    def __init__(self, runner: ConcurrentRunner, render: _Render) -> None:
        self._runner = runner
        self._render = render
        self._over = False

    def __iter__(self) -> ThreadedStream:
        return self

    def __next__(self) -> Pcm:
        if self._over:
            raise StopIteration
        try:
            item = self._runner._take(self._render)
        except RenderCancelled:
            self._over = True
            raise
        if item is _END:
            self._over = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._over = True
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Cancel the render; safe from any thread, while another one reads."""
        self._runner._cancel(self._render)

    def __del__(self) -> None:
        # A reader dropped without close (a client gone, a generator collected) cancels too.
        with contextlib.suppress(Exception):
            self.close()


def _close_quietly(render: _Render) -> None:
    close = getattr(render.steps, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        _log.exception("closing the render %s failed", render.label)
