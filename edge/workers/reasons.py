"""Which ``WorkerError`` reason a worker's refusal means, from its stable error code (the codes
of ``shared/errors.py``, as every surface carries them: ``"code: message"`` in a RunPod job's
``error``, ``{"error": {"code"}}`` in native v1 and the WebSocket's error message).

Only the code is read, never the message: a message may quote the job (its text, its SSML).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from edge.workers.base import WorkerError

# Codes that say "not now" (a busy queue, a rate window, a store that cannot be reached), not
# "this job is wrong"; ``internal`` is a job that ran and failed; every other code names what is
# wrong with the job itself.
_UNAVAILABLE = frozenset(
    {
        "auth_unavailable",
        "storage_unavailable",
        "queue_full",
        "engine_unavailable",
        "engine_out_of_memory",
        "engine_timeout",
        "device_error",
        "rate_limited",
    }
)
_CODE = re.compile(r"[a-z][a-z_]{0,47}")
Reason = Literal["timeout", "unavailable", "refused", "failed"]


def reason_for(code: str | None) -> Reason:
    if code in _UNAVAILABLE:
        return "unavailable"
    if code is None or code == "internal":
        return "failed"
    return "refused"


def plain_code(value: object) -> str | None:
    """``value`` if it looks like one of the worker's error codes (so it is safe to repeat)."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def runpod_error_code(error: object) -> str | None:
    """The code of a RunPod ``error`` string, ``"code: message"``; None for any other error
    (RunPod's own, e.g. a handler that crashed)."""
    if not isinstance(error, str):
        return None
    code, sep, _ = error.partition(":")
    return plain_code(code) if sep else None


def v1_error_code(body: Any) -> str | None:
    """The code of a native v1 error body (``{"error": {"code", "message"}}``) or of a RunPod
    route's (``{"error": "code: message"}``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return plain_code(error.get("code"))
    return runpod_error_code(error)


def coded_error(code: str | None, where: str) -> WorkerError:
    """The ``WorkerError`` for a job the worker answered with ``code``."""
    return WorkerError(reason_for(code), f"{where}: {code or 'the job failed'}")
