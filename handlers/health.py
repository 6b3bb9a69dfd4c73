"""Health: tells a platform probe or an operator that the worker is warm, and with which model."""

from __future__ import annotations

import time

from shared.jobs import HealthResult
from shared.worker import WorkerContext


def health(ctx: WorkerContext) -> HealthResult:
    engine = ctx.engines.default.engine
    return HealthResult(
        engine=engine.name,
        engines=ctx.engines.names,
        model_version=engine.model_version,
        sample_rate=engine.sample_rate,
        languages=sorted(engine.languages),
        uptime_s=round(time.monotonic() - ctx.started_at, 3),
    )
