"""Greetings jobs over RunPod's job shapes, which this product's HTTP app and a RunPod endpoint
both speak (the native v1 API has no greetings route)."""

from __future__ import annotations

from edge.workers.base import Speech
from edge.workers.jobs import greeting_input
from edge.workers.runpod_jobs import RunPodJobs, result_of, url_of


async def cached_url(jobs: RunPodJobs, speech: Speech) -> str | None:
    """The warmed phrase's signed URL, or None when the worker has not cached it."""
    state = await jobs.run_sync(greeting_input(speech, "greetings.get"))
    if state.status == "FAILED" and state.error_code() == "not_found":
        return None
    return url_of(result_of(state, "greetings.get"), "greetings.get")


async def warm(jobs: RunPodJobs, speech: Speech) -> None:
    """Cache the phrase; returns once the worker has it."""
    result_of(await jobs.run_sync(greeting_input(speech, "greetings.warm")), "greetings.warm")
