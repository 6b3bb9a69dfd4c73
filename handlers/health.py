"""Health: tells a platform probe or an operator that the worker is warm, and with which model,
or why it cannot serve (503 over HTTP), so a balancer sends jobs elsewhere."""

from __future__ import annotations

import time

from shared.errors import EngineUnavailable, ShuttingDown
from shared.jobs import HealthResult
from shared.worker import WorkerContext


def health(ctx: WorkerContext) -> HealthResult:
    """The worker's model and uptime; ``EngineUnavailable`` while it drains, while an engine
    step runs past its timeout, or for good once it must be replaced (``fault``)."""
    if ctx.lifecycle.draining:
        raise ShuttingDown("the worker is shutting down")
    reason = fault(ctx)
    if reason is not None:
        raise EngineUnavailable(f"unhealthy, this worker must be replaced: {reason}")
    stalled = [name for name in ctx.engines.names if ctx.engines.runner(name).stalled]
    if stalled:
        raise EngineUnavailable(f"unhealthy: the {', '.join(stalled)} engine is stuck on a step")
    engine = ctx.engines.default.engine
    return HealthResult(
        engine=engine.name,
        engines=ctx.engines.names,
        model_version=engine.model_version,
        sample_rate=engine.sample_rate,
        languages=sorted(engine.languages),
        uptime_s=round(time.monotonic() - ctx.started_at, 3),
    )


def fault(ctx: WorkerContext) -> str | None:
    """Why this worker can no longer be trusted (a device error, an engine step that never
    returned), None while it can: what asks RunPod for a fresh worker (``refresh_worker``)."""
    for name in ctx.engines.names:
        reason = ctx.engines.runner(name).fault
        if reason is not None:
            return f"{name}: {reason}"
    return ctx.lifecycle.fault
