"""RunPod's shapes, in one place for the RunPod worker and the RunPod-compatible web routes.

RunPod carries the tenant key inside the job (``input.api_key``); its output is a list of JSON
items (one result, or a stream's chunks in order) where audio is base64 and every streamed item
stays under 1 MB; its ``error`` is a string. The dispatcher knows none of this.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from handlers.dispatch import JobOutput, dispatch
from handlers.stream import AudioStream
from shared.audio.formats import AudioFormat
from shared.errors import TTSError
from shared.jobs import ApiKeyCredentials, StageTimings, SynthesisResult
from shared.worker import WorkerContext

JobItem = dict[str, Any]
# RunPod keeps each streamed item under 1 MB; base64 adds a third, plus a little JSON.
MAX_STREAM_AUDIO_BYTES = 512 * 1024
KEY_FIELD = "api_key"


class StreamItem(BaseModel):
    """One streamed item; the last has ``final`` set and the stream's totals."""

    request_id: str
    seq: int
    format: AudioFormat
    content_type: str
    sample_rate: int
    audio_base64: str
    final: bool = False
    engine: str | None = None
    voice: str | None = None
    voice_version: str | None = None
    cached: bool | None = None
    duration_s: float | None = None
    bytes: int | None = None
    timings: StageTimings | None = None
    fallback_reason: str | None = None


def take_credentials(raw_input: object) -> tuple[ApiKeyCredentials, object]:
    """Split the key out of a RunPod job's input; ``Unauthorized`` when it has none."""
    if not isinstance(raw_input, Mapping):
        return ApiKeyCredentials.of(None), raw_input
    job = {name: value for name, value in raw_input.items() if name != KEY_FIELD}
    return ApiKeyCredentials.of(raw_input.get(KEY_FIELD)), job


class OutputItems:
    """A job's output items, read from one thread; ``close`` from any thread cancels a stream
    (a generator cannot be closed while another thread runs it, a stream can)."""

    def __init__(self, output: JobOutput) -> None:
        self._output = output
        if isinstance(output, AudioStream):
            self._items = stream_items(output)
        else:
            self._items = iter([result_item(output)])

    def __iter__(self) -> Iterator[JobItem]:
        return self._items

    def close(self) -> None:
        if isinstance(self._output, AudioStream):
            self._output.close()


def start_job(
    raw_input: object, ctx: WorkerContext, *, job_id: str | None = None
) -> Iterator[JobItem]:
    """Run a RunPod job's input now (errors before the first item raise here) and return its
    output items."""
    return iter(output_items(raw_input, ctx, job_id=job_id))


def output_items(
    raw_input: object, ctx: WorkerContext, *, job_id: str | None = None
) -> OutputItems:
    """Like ``start_job``, keeping the handle that cancels a stream from another thread."""
    credentials, job = take_credentials(raw_input)
    return OutputItems(dispatch(job, credentials, ctx, job_id=job_id))


def run_job(raw_input: object, ctx: WorkerContext, *, job_id: str | None = None) -> list[JobItem]:
    """All of a job's items at once (``/runsync``, a local test run)."""
    items = output_items(raw_input, ctx, job_id=job_id)
    try:
        return list(items)
    finally:
        items.close()


def result_item(result: BaseModel) -> JobItem:
    item = dump(result)
    if isinstance(result, SynthesisResult) and result.audio is not None:
        item["audio_base64"] = _b64(result.audio)
    return item


def stream_items(stream: AudioStream) -> Iterator[JobItem]:
    """The stream's chunks cut into items under RunPod's bound, numbered in order."""
    info = stream.info
    seq = 0
    try:
        for chunk in stream:
            pieces = _pieces(chunk.data) or [b""]
            for index, piece in enumerate(pieces):
                item = StreamItem(
                    request_id=info.request_id,
                    seq=seq,
                    format=info.format,
                    content_type=info.content_type,
                    sample_rate=info.sample_rate,
                    audio_base64=_b64(piece),
                )
                summary = chunk.summary if index == len(pieces) - 1 else None
                if summary is not None:
                    item = item.model_copy(
                        update={
                            "final": True,
                            "engine": summary.engine,
                            "voice": summary.voice,
                            "voice_version": summary.voice_version,
                            "cached": summary.cached,
                            "duration_s": summary.duration_s,
                            "bytes": summary.bytes,
                            "timings": summary.timings,
                            "fallback_reason": summary.fallback_reason,
                        }
                    )
                if piece or summary is not None:
                    seq += 1
                    yield dump(item)
    finally:
        stream.close()


def error_string(err: TTSError) -> str:
    """RunPod's ``error`` must be a string: ``"code: message"`` carries both."""
    return str(err)


def dump(model: BaseModel) -> JobItem:
    """JSON-ready dict of a result model (datetimes as ISO strings, no nulls)."""
    return model.model_dump(mode="json", exclude_none=True)


def _pieces(data: bytes) -> list[bytes]:
    step = MAX_STREAM_AUDIO_BYTES
    return [data[i : i + step] for i in range(0, len(data), step)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
