"""The engine's own thread: every model call of a worker runs here, one step at a time.

A job hands the runner a render (an iterator of ``Step`` values, built by the render policy) and
gets back a ``RenderStream`` to read PCM from. The runner advances one render by one step, puts
the audio on that render's bounded queue and picks the next render, round robin. A render whose
queue is full waits for its reader while the others go on, so a slow consumer (a phone line, a
client reading slowly, a base64 encoder) never holds the engine; closing or dropping a stream
cancels its render, and the engine moves on at once.

An engine whose streams keep state in the model (``StreamingTraits.interleavable`` false, XTTS
today) cannot switch renders mid-segment: the runner keeps advancing that render until its step
marks a boundary, past the queue bound if need be, so the bound holds between segments there and
another job waits at most for the rest of one segment.

Faults (``limit`` sets the bounds): a reader stops waiting once the engine's step in progress
has run past the step timeout (``EngineTimeout``) and its render is cancelled, to be closed when
the step returns; the engine then serves the next render. A step that never returns past the
hung bound, or a device error that leaves the model untrusted (``device_faults``), marks the
runner faulted for good: it refuses new renders, and the worker's health says so.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from shared.engines import device_faults
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
from shared.errors import DeviceError


class EngineRunner(RenderQueues):
    """Owns ``engine``'s thread; ``submit`` renders from any thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        queue_chunks: int = DEFAULT_QUEUE_CHUNKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_chunks < 1:
            raise ValueError("queue_chunks must be at least 1")
        super().__init__(engine, queue_chunks)
        self._interleavable = engine.streaming.interleavable
        self._clock = clock
        self._renders: deque[Render] = deque()
        self._hung_s: float | None = None
        self._step_started: float | None = None  # the step in progress began (None: idle)
        self._fault: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"engine-{engine.name}", daemon=True)
        self._thread.start()

    def submit(self, steps: Iterator[Step], *, label: str = "") -> RenderStream:
        """Queue a render; its steps run on the engine thread only. A new render goes first,
        so it waits for no more than the step in progress."""
        render = Render(steps=steps, label=label)
        fault = self.fault
        if fault is not None:
            raise DeviceError(f"the {self.engine.name} engine is out of service: {fault}")
        return self._open(render, lambda: self._renders.appendleft(render))

    def limit(self, *, step_timeout_s: float | None, hung_s: float | None) -> None:
        """How long a reader waits on one engine step, and how long a step may run before the
        engine counts as lost (None: no bound)."""
        with self._cond:
            self._step_timeout_s, self._hung_s = step_timeout_s, hung_s
            self._cond.notify_all()

    @property
    def stalled(self) -> bool:
        """A step has run past the step timeout and has not returned yet."""
        with self._cond:
            running = self._running_for()
            return (
                running is not None
                and self._step_timeout_s is not None
                and (running >= self._step_timeout_s)
            )

    @property
    def fault(self) -> str | None:
        """Why this engine cannot be trusted again in this process (None: it can)."""
        with self._cond:
            running = self._running_for()
            hung = self._hung_s is not None and running is not None and running >= self._hung_s
            if self._fault is None and hung:
                self._fault = f"a step has run {running:.0f} s, past its hung bound"
            return self._fault

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel every render and stop the thread (after the step in progress)."""
        self._cut_short()
        self._thread.join(timeout=timeout_s)

    # --- the reader's side ---------------------------------------------------------------

    def _running_for(self) -> float | None:
        started = self._step_started
        return None if started is None else self._clock() - started

    def _stall_wait(self) -> float | None:
        if self._step_timeout_s is None:
            return None
        running = self._running_for()
        if running is None:  # between steps: look again within one timeout
            return self._step_timeout_s
        return self._step_timeout_s - running

    # --- the engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            render, finished, stop = self._pick()
            for gone in finished:
                close_quietly(gone)
            if stop:
                return
            if render is None:
                continue
            self._step_started = self._clock()
            try:
                step = next(render.steps)
            except StopIteration:
                self._finish(render, END)
            except BaseException as exc:
                self._finish(render, self._failed(exc))
            else:
                self._took(render, step)
            finally:
                self._step_started = None

    def _failed(self, error: BaseException) -> BaseException:
        """A step's failure as its reader sees it; a device fault takes the engine out."""
        translated = device_faults.translate(error)
        if isinstance(translated, DeviceError):
            with self._cond:
                self._fault = self._fault or translated.message
        return translated

    def _took(self, render: Render, step: Step) -> None:
        with self._cond:
            if step.pcm is not None:
                render.queue.append(step.pcm)
            render.mid_segment = not step.boundary
            self._cond.notify_all()
        if step.last:
            self._finish(render, END)
            close_quietly(render)  # runs the render's own cleanup, here on the engine thread

    def _pick(self) -> tuple[Render | None, list[Render], bool]:
        """The next render to advance, cancelled renders to close, and whether to stop."""
        with self._cond:
            while True:
                cancelled = [render for render in self._renders if render.cancelled]
                for render in cancelled:
                    render.done = True
                    self._renders.remove(render)
                if cancelled:
                    self._cond.notify_all()
                    return None, cancelled, False
                if self._closing and not self._renders:
                    return None, [], True
                ready = self._pick_ready()
                if ready is not None:
                    return ready, [], False
                self._cond.wait()

    def _pick_ready(self) -> Render | None:
        """Round robin over renders with room; a render mid-segment on an engine that cannot
        interleave keeps the engine until its segment ends. Call with the lock held, after
        ``_pick`` has taken the cancelled renders out."""
        if not self._interleavable:
            for render in self._renders:
                if render.mid_segment:
                    return render
        for _ in range(len(self._renders)):
            render = self._renders[0]
            self._renders.rotate(-1)
            if len(render.queue) < self._queue_chunks:
                return render
        return None

    def _finish(self, render: Render, last: object) -> None:
        with self._cond:
            render.done = True
            render.mid_segment = False
            render.queue.append(last)
            if render in self._renders:
                self._renders.remove(render)
            self._cond.notify_all()
