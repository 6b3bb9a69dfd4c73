"""The engines one worker speaks with, each behind its own runner and its own guard.

A model (XTTS, Piper) runs on its engine thread (``EngineRunner``), one step at a time. An engine
that only waits on I/O (a vendor API, which says so with ``max_concurrent``) gets a
``ConcurrentRunner`` instead: each request reads on a thread of its own, up to that many at
once, so a slow vendor answer holds no other job's step.

The worker's order (``TTS_ENGINES``, the first the default) is every job's order unless its
tenant has one of its own; handlers ask the set for a job's order and the runner and guard of
each engine in it, and never hold a single global engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from shared.engines.base import Engine, Pcm
from shared.engines.failover import EngineGuard, FailoverPolicy, StateListener
from shared.engines.render_stream import Step
from shared.engines.runner import EngineRunner
from shared.engines.vendors.concurrent import ConcurrentRunner
from shared.errors import EngineUnavailable


class Render(Protocol):
    """A render's reading end: PCM in order; ``close`` (from any thread) cancels it."""

    def __iter__(self) -> Iterator[Pcm]: ...

    def __next__(self) -> Pcm: ...

    def close(self) -> None: ...


class Runner(Protocol):
    """Where an engine's renders run (``EngineRunner``, ``ConcurrentRunner``)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def active(self) -> int: ...

    @property
    def stalled(self) -> bool: ...

    @property
    def fault(self) -> str | None: ...

    def submit(self, steps: Iterator[Step], *, label: str = "") -> Render: ...

    def limit(self, *, step_timeout_s: float | None, hung_s: float | None) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IoBoundEngine(Protocol):
    """An engine whose calls wait on the network: at most ``max_concurrent`` at once."""

    max_concurrent: int


def runner_for(engine: Engine) -> Runner:
    if isinstance(engine, IoBoundEngine):
        return ConcurrentRunner(engine, max_concurrent=engine.max_concurrent)
    return EngineRunner(engine)


class EngineSet:
    def __init__(
        self,
        engines: Sequence[Engine],
        *,
        default: str | None = None,
        policy: FailoverPolicy | None = None,
        on_state: StateListener | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not engines:
            raise EngineUnavailable("a worker needs at least one engine")
        names = [engine.name for engine in engines]
        if len(set(names)) != len(names):
            raise EngineUnavailable(f"an engine is loaded twice: {', '.join(names)}")
        self._runners = {engine.name: runner_for(engine) for engine in engines}
        self._default = default or engines[0].name
        if self._default not in self._runners:
            raise EngineUnavailable(f"the default engine {self._default!r} is not loaded")
        policy = policy or FailoverPolicy()
        self._guards = {
            name: EngineGuard(name, policy, on_state=on_state, sleep=sleep) for name in names
        }
        if on_state is not None:
            for name in names:
                on_state(name, self._guards[name].state)

    @property
    def default(self) -> Runner:
        return self._runners[self._default]

    @property
    def names(self) -> list[str]:
        return list(self._runners)

    def runner(self, name: str) -> Runner:
        return self._runners[name]

    def guard(self, name: str) -> EngineGuard:
        return self._guards[name]

    def order(self, preferred: Sequence[str] | None = None) -> list[str]:
        """The engines to try, primary first: the loaded ones of ``preferred`` (a tenant's
        order) in its order, else the worker's own (the default first). An order naming no
        engine this worker loaded is the worker's order, so a job is never left without one."""
        chosen = [name for name in dict.fromkeys(preferred or ()) if name in self._runners]
        if chosen:
            return chosen
        return [self._default, *(name for name in self._runners if name != self._default)]

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
