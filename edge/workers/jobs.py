"""The worker's job inputs for a ``Speech``: synthesize jobs and greetings jobs, with the
tenant key where each transport carries it (a RunPod job's ``input.api_key``, or a Bearer
header)."""

from __future__ import annotations

from typing import Any, Literal

from edge.workers.base import Speech, WorkerError

GreetingAction = Literal["greetings.get", "greetings.warm"]


def synthesize_input(speech: Speech, delivery: Literal["url", "stream"]) -> dict[str, Any]:
    """A RunPod job's input: a synthesize job with its key."""
    return _keyed({**speech.job_fields(), "delivery": delivery}, speech)


def greeting_input(speech: Speech, action: GreetingAction) -> dict[str, Any]:
    """A greetings job for ``speech.text`` with the same speech settings (so it shares the
    cache entries of synthesize jobs), with its key."""
    if speech.text is None:
        raise WorkerError("refused", f"{action}: a greeting is plain text, not SSML")
    settings = {
        name: value for name, value in speech.job_fields().items() if name not in ("text", "ssml")
    }
    phrase: dict[str, Any] = (
        {"text": speech.text} if action == "greetings.get" else {"phrases": [speech.text]}
    )
    return _keyed({"action": action, **settings, **phrase}, speech)


def bearer(speech: Speech) -> dict[str, str]:
    """Native v1's key header."""
    return {"Authorization": f"Bearer {speech.api_key.get_secret_value()}"}


def _keyed(job: dict[str, Any], speech: Speech) -> dict[str, Any]:
    return {**job, "api_key": speech.api_key.get_secret_value()}
