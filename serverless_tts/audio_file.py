"""Write a job's audio to a file for the CLI: checked before any synthesis, written next to the
target and moved into place only when complete, so a failed job leaves no half file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from handlers.dispatch import JobOutput
from handlers.stream import AudioStream
from shared.audio.encode import WAV_HEADER_BYTES, wav_header
from shared.audio.formats import AudioFormat
from shared.errors import InternalError, InvalidInput
from shared.jobs import SynthesisResult


@dataclass(frozen=True, slots=True)
class Written:
    duration_s: float
    bytes: int


class AudioSink:
    def __init__(self, handle: BinaryIO, fmt: AudioFormat) -> None:
        self._handle = handle
        self._format = fmt

    def write_output(self, output: JobOutput) -> Written:
        if isinstance(output, SynthesisResult) and output.audio is not None:
            self._handle.write(output.audio)
            return Written(output.duration_s, len(output.audio))
        if not isinstance(output, AudioStream):
            raise InternalError("the job produced no audio to write")
        summary = None
        try:
            for chunk in output:
                self._handle.write(chunk.data)
                summary = chunk.summary or summary
        finally:
            output.close()  # an interrupted write cancels the render and logs the job now
        if summary is None:
            raise InternalError("the stream ended without its summary")
        if self._format is AudioFormat.WAV:
            # A streamed WAV header says "length unknown"; a file can say the real one.
            self._handle.seek(0)
            self._handle.write(wav_header(summary.sample_rate, summary.bytes - WAV_HEADER_BYTES))
        return Written(summary.duration_s, summary.bytes)


@contextmanager
def write_audio(path: Path, fmt: AudioFormat) -> Iterator[AudioSink]:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInput(f"cannot write {path}: the folder {folder} does not exist")
    if path.is_dir():
        raise InvalidInput(f"cannot write {path}: it is a folder")
    if not os.access(folder, os.W_OK):
        raise InvalidInput(f"cannot write {path}: the folder {folder} is not writable")
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - moved into place below
        dir=folder, prefix=f".{path.name}.", suffix=".part", delete=False
    )
    try:
        with handle:
            yield AudioSink(handle, fmt)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
