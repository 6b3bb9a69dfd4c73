"""One keep-alive HTTP client for a worker's JSON routes, where httpx's errors and the worker's
refusals become ``WorkerError`` (once, here), each call bounded by its timeout with its
retries inside it.

A message names the route, the status and the worker's error code, never a header (keys) or
a body (the text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from edge.workers.base import WorkerError
from edge.workers.reasons import v1_error_code
from edge.workers.retry import Retryable, deadline, with_retries

# A 429 is retried only when the worker asks for a wait this short: a longer one is a rate
# window that a phone call cannot wait out.
SHORT_RETRY_AFTER_S = 1.0


class JsonCalls:
    """``base_url``'s JSON routes; ``headers`` go with every request (a platform's own key),
    ``transport`` replaces httpx's (tests count attempts with it)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        retries: int,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=dict(headers or {}),
            timeout=timeout_s,
            transport=transport,
        )

    async def post(
        self,
        path: str,
        body: Mapping[str, Any] | None,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        return await self._call("POST", path, body, params, headers, timeout_s)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path, None, None, None, None)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
        timeout_s: float | None,
    ) -> dict[str, Any]:
        where = f"{method} {path}"
        request = self._client.build_request(
            method, path, json=body, params=params, headers=headers
        )

        async def attempt() -> dict[str, Any]:
            return _reply(await _send(self._client, request, where), where)

        with deadline(timeout_s or self.timeout_s, where):
            return await with_retries(attempt, self.retries)


async def _send(client: httpx.AsyncClient, request: httpx.Request, where: str) -> httpx.Response:
    try:
        return await client.send(request)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing reached the worker
        raise Retryable(WorkerError("unavailable", f"{where}: cannot connect")) from exc
    except httpx.TimeoutException as exc:
        raise WorkerError("timeout", f"{where}: the worker stopped answering") from exc
    except httpx.TransportError as exc:  # it may have run: no retry
        raise WorkerError("unavailable", f"{where}: the connection failed") from exc


def _reply(response: httpx.Response, where: str) -> dict[str, Any]:
    status = response.status_code
    if response.is_success:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise WorkerError("failed", f"{where}: HTTP {status} without a JSON object")
        return body
    code = _error_code(response)
    what = f"{where}: HTTP {status}" + (f" {code}" if code else "")
    raise status_failure(status, what, retry_after_s(response.headers.get("retry-after")))


def status_failure(status: int, what: str, after_s: float | None) -> WorkerError | Retryable:
    """What a worker's non-2xx status means; ``Retryable`` when it said it is overloaded."""
    error = WorkerError("unavailable", what)
    if status == 503:
        return Retryable(error, after_s)
    if status == 429:  # a short wait is worth it, a rate window is not
        return (
            Retryable(error, after_s)
            if after_s is not None and after_s <= SHORT_RETRY_AFTER_S
            else error
        )
    if status >= 500:  # the request reached the worker, which may have done the work
        return error
    if status >= 400:
        return WorkerError("refused", what)
    return WorkerError("failed", what)  # a redirect: no route of the worker answers one


def _error_code(response: httpx.Response) -> str | None:
    try:
        return v1_error_code(response.json())
    except ValueError:
        return None


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After in seconds (the workers never send its HTTP-date form)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None
