"""RunPod glue: the handler functions and start configuration for ``runpod.serverless.start``.

Handlers are async so that, with ``concurrency_modifier`` above 1, one job's encoding and delivery
overlap another's synthesis (the engine runs on its own thread); the blocking work runs in
threads. Nothing scrapes a RunPod worker, so after each job the worker's metrics go to its log
(which RunPod keeps) as one ``{"event": "metrics"}`` line beside the job's own event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from serverless_tts.runpod_shapes import JobItem, OutputItems, error_string, output_items, run_job
from shared.error_reports import init_worker_error_reports
from shared.errors import TTSError
from shared.metrics import log_metrics_event
from shared.worker import WorkerContext

_DONE = object()
RunpodJob = Mapping[str, Any]


def make_stream_handler(ctx: WorkerContext) -> Callable[[RunpodJob], AsyncIterator[JobItem]]:
    """The production handler: each yield is one ``/stream`` item; with ``return_aggregate_stream``
    ``/run`` and ``/runsync`` get the list (one result, or a stream's chunks in order)."""

    async def handler(job: RunpodJob) -> AsyncIterator[JobItem]:
        output: OutputItems | None = None
        try:
            output = await asyncio.to_thread(
                output_items, job.get("input"), ctx, job_id=job.get("id")
            )
            items = iter(output)
            while (item := await asyncio.to_thread(_next, items)) is not _DONE:
                yield item  # type: ignore[misc]
        except TTSError as err:
            # RunPod marks a job FAILED when a streamed item is {"error": <string>}.
            yield {"error": error_string(err)}
        finally:
            if output is not None:
                output.close()  # a job cancelled mid-stream frees the engine at once
            log_metrics_event(ctx.metrics, job.get("id"))

    return handler


def make_local_test_handler(ctx: WorkerContext) -> Callable[[RunpodJob], Any]:
    """The same jobs, answered at once with the list the aggregated stream would give.

    The output is also printed whole, as one JSON line on stdout: the SDK's own "Job result"
    log line is cut at 4,096 characters, which no real audio fits in.
    """

    async def handler(job: RunpodJob) -> list[JobItem] | dict[str, str]:
        try:
            items = await asyncio.to_thread(run_job, job.get("input"), ctx, job_id=job.get("id"))
        except TTSError as err:
            return {"error": error_string(err)}
        finally:
            log_metrics_event(ctx.metrics, job.get("id"))
        print(json.dumps({"output": items}), flush=True)
        return items

    return handler


def is_local_test_run(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the SDK will run one local test job (``--test_input`` or ``test_input.json``).

    runpod 1.12 runs that job through its non-streaming path (rp_local.run_local -> run_job),
    which never iterates a generator, so the local run needs the whole-result handler.
    """
    if "--rp_serve_api" in argv or environ.get("RUNPOD_REALTIME_PORT"):
        return False
    return "--test_input" in argv or not environ.get("RUNPOD_WEBHOOK_GET_JOB")


def runpod_config(
    ctx: WorkerContext, argv: Sequence[str], environ: Mapping[str, str]
) -> dict[str, Any]:
    init_worker_error_reports(environ)  # with SENTRY_DSN only
    local = is_local_test_run(argv, environ)
    concurrency = ctx.settings.concurrency
    return {
        "handler": make_local_test_handler(ctx) if local else make_stream_handler(ctx),
        "return_aggregate_stream": True,
        "concurrency_modifier": lambda current: concurrency,
    }


def _next(items: Iterator[JobItem]) -> object:
    return next(items, _DONE)
