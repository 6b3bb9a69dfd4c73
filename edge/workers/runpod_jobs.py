"""RunPod's job routes as a client sees them, at any base URL that speaks them: RunPod's cloud
(``https://api.runpod.ai/v2/{endpoint_id}``) or this product's RunPod-compatible routes.

- ``POST /runsync`` holds the request while the job runs, up to ``?wait=`` ms on RunPod (then
  it answers ``IN_QUEUE``/``IN_PROGRESS`` with the job's id, and ``GET /status/{id}`` is polled
  to the end);
- ``POST /run`` queues (``"webhook"`` hears the job's end) and answers the id at once;
- ``GET /stream/{id}`` gives the items a streaming job produced since the last poll;
- ``POST /cancel/{id}`` stops a job.

Our worker's output is a list: one result, or a stream's items (``runpod_shapes``); a job that
failed has ``error`` as ``"code: message"``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.workers.base import WorkerError
from edge.workers.http_calls import JsonCalls
from edge.workers.reasons import coded_error, runpod_error_code
from edge.workers.retry import deadline

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
# RunPod's bounds on ``?wait=`` (ms).
MIN_WAIT_MS, MAX_WAIT_MS = 1_000, 300_000
# A cancel is a courtesy to free the GPU: it never holds up the caller for long.
CANCEL_TIMEOUT_S = 3.0


class JobState(BaseModel):
    """A job as ``/runsync``, ``/run``, ``/status`` and ``/stream`` describe it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")  # it goes into paths
    status: str
    output: Any = None
    error: Any = None
    stream: list[Any] = Field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def error_code(self) -> str | None:
        """The worker's error code: in ``error``, or in an ``{"error"}`` item of the output
        (RunPod's streaming handlers fail a job that way)."""
        code = runpod_error_code(self.error)
        if code is None and isinstance(self.output, list):
            for item in self.output:
                if isinstance(item, dict) and "error" in item:
                    return runpod_error_code(item["error"])
        return code


class RunPodJobs:
    """``calls``' base URL as RunPod's job API. ``wait``: send RunPod's ``?wait=`` with
    ``/runsync`` (the local routes hold until the job ends); ``webhook_url`` goes with every
    ``/run``; ``poll_interval_s`` between ``/status`` and ``/stream`` polls."""

    def __init__(
        self,
        calls: JsonCalls,
        *,
        wait: bool = False,
        webhook_url: str | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        self._calls = calls
        self._wait = wait
        self._webhook_url = webhook_url
        self._poll_s = poll_interval_s

    async def run_sync(self, job_input: dict[str, Any]) -> JobState:
        """The job's final state, within the calls' timeout (polling included)."""
        with deadline(self._calls.timeout_s, "POST /runsync"):
            params = {"wait": _wait_ms()} if self._wait else None
            reply = await self._calls.post("/runsync", {"input": job_input}, params=params)
            state = read_state(reply, "POST /runsync")
            while not state.final:
                await anyio.sleep(self._poll_s)
                state = read_state(await self._calls.get(f"/status/{state.id}"), "GET /status")
            return state

    async def submit(self, job_input: dict[str, Any]) -> str:
        """Queue the job (``/run``); its id."""
        body: dict[str, Any] = {"input": job_input}
        if self._webhook_url is not None:
            body["webhook"] = self._webhook_url
        return read_state(await self._calls.post("/run", body), "POST /run").id

    async def stream_outputs(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """A streaming job's items in order, to its end; ``WorkerError`` when it fails, or when
        no item comes for the calls' timeout."""
        where = "GET /stream"
        last_item = anyio.current_time()
        while True:
            state = read_state(await self._calls.get(f"/stream/{job_id}"), where)
            for chunk in state.stream:
                output = chunk.get("output") if isinstance(chunk, dict) else None
                if not isinstance(output, dict):
                    raise WorkerError("failed", f"{where}: an item without an output object")
                if "error" in output:
                    raise coded_error(runpod_error_code(output["error"]), where)
                yield output
            if state.final:
                if state.status != "COMPLETED":
                    raise failure(state, where)
                return
            if state.stream:
                last_item = anyio.current_time()
            elif anyio.current_time() - last_item > self._calls.timeout_s:
                raise WorkerError("timeout", f"{where}: no audio for {self._calls.timeout_s:g} s")
            await anyio.sleep(self._poll_s)

    async def cancel(self, job_id: str) -> None:
        """Ask RunPod to stop the job; shielded, so a caller being cancelled still sends it,
        and bounded. A route that does not exist or a worker that is gone changes nothing."""
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CANCEL_TIMEOUT_S),
            suppress(WorkerError),
        ):
            await self._calls.post(f"/cancel/{job_id}", None, timeout_s=CANCEL_TIMEOUT_S)


def read_state(reply: dict[str, Any], where: str) -> JobState:
    try:
        return JobState.model_validate(reply)
    except ValidationError:
        raise WorkerError("failed", f"{where}: not a RunPod job status") from None


def result_of(state: JobState, where: str) -> dict[str, Any]:
    """A finished job's one result (our worker's output is ``[result]``)."""
    if state.status != "COMPLETED":
        raise failure(state, where)
    output = state.output
    item = output[0] if isinstance(output, list) and len(output) == 1 else None
    if not isinstance(item, dict):
        raise WorkerError("failed", f"{where}: the job's output is not one result")
    if "error" in item:
        raise coded_error(runpod_error_code(item["error"]), where)
    return item


def failure(state: JobState, where: str) -> WorkerError:
    if state.status == "TIMED_OUT":
        return WorkerError("timeout", f"{where}: RunPod timed the job out")
    if state.status == "CANCELLED":
        return WorkerError("failed", f"{where}: the job was cancelled")
    return coded_error(state.error_code(), where)


def url_of(result: dict[str, Any], where: str) -> str:
    url = result.get("url")
    if not isinstance(url, str) or not url:
        # Storage failed and the worker sent the audio inline instead: no URL to play.
        raise WorkerError("failed", f"{where}: the result has no URL")
    return url


def _wait_ms() -> int:
    """What is left of the enclosing deadline, in RunPod's bounds."""
    left_s = anyio.current_effective_deadline() - anyio.current_time()
    if math.isinf(left_s):
        return MAX_WAIT_MS
    return max(MIN_WAIT_MS, min(MAX_WAIT_MS, int(left_s * 1000)))
