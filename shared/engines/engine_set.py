"""The engines one worker speaks with, each behind its own runner thread.

One engine is configured today, and every job speaks with the default; the set is the seam for
more (vendor engines, per-tenant engine orders): handlers ask the set for an engine and never
hold a single global one.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.engines.base import Engine
from shared.engines.runner import EngineRunner
from shared.errors import EngineUnavailable


class EngineSet:
    def __init__(self, engines: Sequence[Engine], *, default: str | None = None) -> None:
        if not engines:
            raise EngineUnavailable("a worker needs at least one engine")
        self._runners = {engine.name: EngineRunner(engine) for engine in engines}
        self._default = default or engines[0].name
        if self._default not in self._runners:
            raise EngineUnavailable(f"the default engine {self._default!r} is not loaded")

    @property
    def default(self) -> EngineRunner:
        return self._runners[self._default]

    @property
    def names(self) -> list[str]:
        return list(self._runners)

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
