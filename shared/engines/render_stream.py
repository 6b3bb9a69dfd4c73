"""What both runners share: a render's queue, its reading end, and cancelling it.

The engine thread (``shared.engines.runner``) and the vendor runner
(``shared.engines.vendors.concurrent``) advance renders differently, one thread for all or one
each, but a reader sees them alike: PCM until an end, a failure, or a cancel; closing or
dropping the stream cancels; a shutdown cuts every render short with an error, never an end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from shared.engines.base import Engine, Pcm
from shared.errors import EngineTimeout, EngineUnavailable

_log = logging.getLogger(__name__)

# Chunks a render may have made ahead of its reader (XTTS chunk ~1 s, Piper one sentence).
DEFAULT_QUEUE_CHUNKS = 4
END = object()  # the render is complete
CANCELLED = object()  # the render was cancelled: its reader stops without an end


@dataclass(frozen=True, slots=True)
class Step:
    """One engine step's audio (None: a step that only marks a boundary); ``boundary``: the
    engine holds no state of this render after this step; ``last``: the render is complete
    (its reader need not wait for another turn to learn so)."""

    pcm: Pcm | None
    boundary: bool = True
    last: bool = False


class RenderCancelled(Exception):
    """The render was cancelled (its stream closed): its reader stops without an end."""


@dataclass(eq=False)
class Render:
    steps: Iterator[Step]
    label: str
    queue: deque[object] = field(default_factory=deque)
    cancelled: bool = False
    done: bool = False
    mid_segment: bool = False  # only the engine thread, for an engine that cannot interleave


class RenderQueues:
    """A runner's renders under one condition: opening, reading, cancelling and cutting short.

    A subclass keeps ``_renders`` (every render not yet finished or cancelled) and advances
    them; ``_stall_wait`` bounds how long a reader waits for the next chunk (None: unbounded).
    """

    _renders: Collection[Render]

    def __init__(self, engine: Engine, queue_chunks: int) -> None:
        self.engine = engine
        self._queue_chunks = queue_chunks
        self._cond = threading.Condition()
        self._closing = False
        self._step_timeout_s: float | None = None

    @property
    def active(self) -> int:
        """Renders submitted and not yet finished or cancelled."""
        with self._cond:
            return len(self._renders)

    def _open(self, render: Render, register: Callable[[], None]) -> RenderStream:
        """``register`` the render (under the lock) unless the runner is closing."""
        with self._cond:
            if self._closing:
                raise EngineUnavailable("the worker is shutting down")
            register()
            self._cond.notify_all()
        return RenderStream(self, render)

    def _cut_short(self) -> None:
        """Refuse new renders and cancel every one in flight."""
        with self._cond:
            self._closing = True
            for render in self._renders:
                render.cancelled = True
                # A reader still waiting must learn its audio is cut short, not see an end.
                render.queue.append(EngineUnavailable("the worker is shutting down"))
            self._cond.notify_all()

    def _stall_wait(self) -> float | None:
        """Seconds a reader may still wait for the step in progress (None: unbounded)."""
        return None

    def _take(self, render: Render) -> object:
        with self._cond:
            while not render.queue:
                if render.cancelled:
                    return CANCELLED
                if render.done:
                    return END
                wait_s = self._stall_wait()
                if wait_s is not None and wait_s <= 0:
                    # The reader stops waiting; the render is closed when its step returns.
                    render.cancelled = True
                    self._cond.notify_all()
                    return EngineTimeout(
                        f"the {self.engine.name} engine's step ran past {self._step_timeout_s:g} s"
                        " (TTS_ENGINE_TIMEOUT_S); retry"
                    )
                self._cond.wait(wait_s)
            item = render.queue.popleft()
            self._cond.notify_all()  # room on this render's queue: it may run again
            return item

    def _cancel(self, render: Render) -> None:
        with self._cond:
            if not render.done:
                render.cancelled = True
                self._cond.notify_all()


class RenderStream:
    """The reading end of one render: iterate for PCM; ``close`` (or dropping it) cancels."""

    def __init__(self, runner: RenderQueues, render: Render) -> None:
        self._runner = runner
        self._render = render
        self._over = False

    def __iter__(self) -> RenderStream:
        return self

    def __next__(self) -> Pcm:
        if self._over:
            raise StopIteration
        item = self._runner._take(self._render)
        if item is END:
            self._over = True
            raise StopIteration
        if item is CANCELLED:
            self._over = True
            raise RenderCancelled
        if isinstance(item, BaseException):
            self._over = True
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Cancel the render; safe from any thread, while another one reads."""
        self._runner._cancel(self._render)

    def __del__(self) -> None:
        # A reader dropped without close (a client gone, a generator collected) cancels too.
        with contextlib.suppress(Exception):  # at interpreter exit the runner may be gone
            self.close()


def close_quietly(render: Render) -> None:
    """End a render's generator on the thread that ran it, where its state (model, vendor
    connection) lives."""
    close = getattr(render.steps, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        _log.exception("closing the render %s failed", render.label)
