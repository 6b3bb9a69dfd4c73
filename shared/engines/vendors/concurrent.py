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

import threading
from collections.abc import Iterator

from shared.engines.base import Engine
from shared.engines.render_stream import (
    DEFAULT_QUEUE_CHUNKS,
    END,
    Render,
    RenderQueues,
    RenderStream,
    Step,
    close_quietly,
)


class ConcurrentRunner(RenderQueues):
    """The runner of an engine whose calls wait on I/O: ``submit`` from any thread."""

    def __init__(
        self, engine: Engine, *, max_concurrent: int, queue_chunks: int = DEFAULT_QUEUE_CHUNKS
    ) -> None:
        if max_concurrent < 1 or queue_chunks < 1:
            raise ValueError("max_concurrent and queue_chunks must be at least 1")
        super().__init__(engine, queue_chunks)
        self._limit = max_concurrent
        self._renders: dict[Render, threading.Thread] = {}
        self._running = 0

    def submit(self, steps: Iterator[Step], *, label: str = "") -> RenderStream:
        """Start a render on a thread of its own; it waits there while ``max_concurrent``
        others are reading."""
        render = Render(steps=steps, label=label)
        thread = threading.Thread(
            target=self._run, args=(render,), name=f"engine-{self.engine.name}", daemon=True
        )

        def register() -> None:
            self._renders[render] = thread

        stream = self._open(render, register)
        thread.start()
        return stream

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
        self._cut_short()
        with self._cond:  # no render starts once closing; finished ones need no join
            threads = list(self._renders.values())
        for thread in threads:
            thread.join(timeout=timeout_s)

    # --- each render's thread ------------------------------------------------------------

    def _run(self, render: Render) -> None:
        try:
            if self._wait_for_slot(render):
                try:
                    self._read(render)
                finally:
                    with self._cond:
                        self._running -= 1
                        self._cond.notify_all()
        finally:
            close_quietly(render)
            with self._cond:
                render.done = True
                del self._renders[render]
                self._cond.notify_all()

    def _wait_for_slot(self, render: Render) -> bool:
        """True once this render may read; False when it was cancelled while it waited."""
        with self._cond:
            while self._running >= self._limit and not render.cancelled:
                self._cond.wait()
            if render.cancelled:
                return False
            self._running += 1
            return True

    def _read(self, render: Render) -> None:
        while True:
            with self._cond:
                while len(render.queue) >= self._queue_chunks and not render.cancelled:
                    self._cond.wait()
                if render.cancelled:
                    return
            try:
                step = next(render.steps)
            except StopIteration:
                self._put(render, END)
                return
            except BaseException as exc:
                self._put(render, exc)
                return
            if step.pcm is not None:
                self._put(render, step.pcm)
            if step.last:
                self._put(render, END)
                return

    def _put(self, render: Render, item: object) -> None:
        with self._cond:
            render.queue.append(item)
            self._cond.notify_all()
