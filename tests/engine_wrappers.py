"""Real engines wrapped for tests: to count, hold or record their calls. The speech is the real
engine's; only the wrapper's bookkeeping is added (for scheduling tests the order of steps is
the evidence, never a clock)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.engines.base import Engine, Pcm, Voice
from shared.worker import WorkerContext

Event = tuple[str, str]


class WrappedEngine:
    """``engine`` behind the Engine protocol, every call passed on; subclasses add to it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.name, self.model_version = engine.name, engine.model_version
        self.sample_rate, self.languages = engine.sample_rate, engine.languages
        self.default_voice, self.streaming = engine.default_voice, engine.streaming

    def voices(self) -> Sequence[Voice]:
        return self._engine.voices()

    def voice(self, voice_id: str) -> Voice:
        return self._engine.voice(voice_id)

    def segment_limit(self, language: str) -> int:
        return self._engine.segment_limit(language)

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        return self._engine.synthesize(text, voice=voice, language=language, speed=speed)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        return self._engine.stream(text, voice=voice, language=language, speed=speed)


class GatedEngine(WrappedEngine):
    """Every call waits in the engine until ``gate`` is set; ``entered`` says one has arrived
    there (a job really running, really held) and ``calls`` counts them."""

    def __init__(self, engine: Engine, *, open_gate: bool = False) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.entered = threading.Event()
        self.calls = 0

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        self._hold()
        return super().synthesize(text, voice=voice, language=language, speed=speed)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        self._hold()
        return super().stream(text, voice=voice, language=language, speed=speed)

    def _hold(self) -> None:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"


class RecordingEngine(WrappedEngine):
    """A real engine whose every model step is logged as ("begin", text) ... ("end", text)."""

    def __init__(self, engine: Engine, hold: Callable[[str], None] | None = None) -> None:
        super().__init__(engine)
        self._hold = hold
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def note(self, kind: str, text: str) -> None:
        with self._lock:
            self.events.append((kind, text))
        if kind == "begin" and self._hold is not None:
            self._hold(text)  # a test may hold a step here until it has set something up

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        self.note("begin", text)
        try:
            return self._engine.synthesize(text, voice=voice, language=language, speed=speed)
        finally:
            self.note("end", text)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        inner = self._engine.stream(text, voice=voice, language=language, speed=speed)

        def steps() -> Iterator[Pcm]:
            try:
                while True:
                    self.note("begin", text)
                    try:
                        pcm = next(inner)
                    except StopIteration:
                        return
                    finally:
                        self.note("end", text)
                    yield pcm
            finally:
                close = getattr(inner, "close", None)
                if close is not None:
                    close()

        return steps()


def begins_between(events: list[Event], start: Event, prefix: str) -> list[str]:
    """Texts starting with ``prefix`` whose steps began after ``start`` and before the first
    step of any other text."""
    seen = events[events.index(start) + 1 :]
    found = []
    for kind, text in seen:
        if kind != "begin":
            continue
        if not text.startswith(prefix):
            break
        found.append(text)
    return found


def recording_worker(
    make_worker: Callable[[Engine], WorkerContext],
    recording: RecordingEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerContext:
    """A worker around ``recording`` whose runner also notes ("submit", label) for each job."""
    worker = make_worker(recording)  # type: ignore[arg-type]
    runner = worker.engines.default
    submit = runner.submit

    def noting_submit(steps: Any, *, label: str = "") -> Any:
        recording.note("submit", label)
        return submit(steps, label=label)

    monkeypatch.setattr(runner, "submit", noting_submit)
    return worker


def counting(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    """Wrap ``target.name`` so each call is counted; the list's length is the count."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


class FaultyEngine(WrappedEngine):
    """The real engine, but its next calls raise the errors queued with ``fail_next`` (one a
    call), from inside the engine, as a model that runs out of memory or faults would."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def fail_next(self, *errors: BaseException) -> None:
        with self._lock:
            self._errors.extend(errors)

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        self._raise_queued()
        return super().synthesize(text, voice=voice, language=language, speed=speed)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        self._raise_queued()
        return super().stream(text, voice=voice, language=language, speed=speed)

    def _raise_queued(self) -> None:
        with self._lock:
            error = self._errors.pop(0) if self._errors else None
        if error is not None:
            raise error


class FileGatedEngine(GatedEngine):
    """A ``GatedEngine`` another process drives through files in ``folder``: each call writes
    ``entered`` and waits until ``open`` exists (a worker under test in a subprocess)."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        super().__init__(engine)
        self._folder = folder

    def _hold(self) -> None:
        self.calls += 1
        (self._folder / "entered").write_text(str(self.calls))
        opened = self._folder / "open"
        for _ in range(1200):  # a minute at most: a test that never opens it fails, not hangs
            if opened.exists():
                return
            time.sleep(0.05)
        raise AssertionError("the test never opened the gate")
