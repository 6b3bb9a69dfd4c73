"""The failover rig shared by the failover tests: Piper behind a wrapper that fails on demand,
and OpenAI speech against its local server (tests/vendor_servers.py), in workers over both.

A test takes the ``rig`` fixture (tests/handlers/conftest.py): one per test, ``open_rig`` on
the module's OpenAI server (``openai_server``, module-scoped).
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from serverless_tts.runpod_shapes import run_job
from shared.audio.encode import encode
from shared.audio.formats import AudioFormat
from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.vendors import OpenAISpeechEngine, vendor_configs
from shared.tenants.base import UNLIMITED, TenantStore
from shared.worker import WorkerContext, build_worker
from tests.audio_probe import ffprobe_json
from tests.engine_wrappers import GatedEngine
from tests.vendor_servers import Reply, VendorServer

KEY = "sk-test-failover-0123456789abcdef"
TEXT = "Thanks for calling Acme."


class FlakyEngine(GatedEngine):
    """The real engine, raising ``failing`` (when set) instead of speaking; ``calls`` counts
    every call that reached it, failed or not."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, open_gate=True)
        self.failing: BaseException | None = None

    def _hold(self) -> None:
        super()._hold()
        if self.failing is not None:
            raise self.failing


@functools.cache
def openai_speech(piper_engine: Engine) -> bytes:
    """Real speech as OpenAI sends it: 24 kHz PCM16 (made once per engine)."""
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(TEXT, voice=voice, language="en", speed=1.0)
    return encode(pcm, in_rate=piper_engine.sample_rate, fmt=AudioFormat.PCM16, out_rate=24000)


@dataclass
class Rig:
    """Piper behind ``flaky`` and OpenAI speech on its local ``server``, and workers over both."""

    flaky: FlakyEngine
    openai: OpenAISpeechEngine
    server: VendorServer
    settings: Settings
    made: list[WorkerContext] = field(default_factory=list)
    engines: list[OpenAISpeechEngine] = field(default_factory=list)

    def vendor(self, *, base_url: str | None = None, **fields: Any) -> OpenAISpeechEngine:
        """Another OpenAI engine (on ``server`` unless ``base_url``), with ``fields`` set."""
        configured = Settings(
            **{"OPENAI_API_KEY": KEY, "openai_speech_base_url": base_url or self.server.base_url},
            **fields,
        )
        engine = OpenAISpeechEngine(vendor_configs(configured)["openai"])
        self.engines.append(engine)
        return engine

    def worker(
        self,
        primary: str,
        *,
        tenants: TenantStore | None = None,
        openai: OpenAISpeechEngine | None = None,
        **changes: Any,
    ) -> WorkerContext:
        """A worker whose order starts with ``primary``, with a small breaker: 2 failures open
        it for 2 s (short to wait out, long enough for a loaded machine to see it open);
        retries without backoff unless a vendor asks, waiting at most 1 s.
        ``openai``: the OpenAI engine to use instead of the rig's own."""
        policy = {
            "breaker_failures": 2,
            "breaker_open_s": 2.0,
            "retry_attempts": 3,
            "retry_backoff_s": 0.0,
            "retry_max_wait_s": 1.0,
        }
        engines: list[Any] = [self.flaky, openai or self.openai]
        if primary == "openai":
            engines.reverse()
        tuned = self.settings.model_copy(update={**policy, **changes})
        self.made.append(build_worker(tuned, engines=engines, tenants=tenants))
        return self.made[-1]


@contextmanager
def open_rig(settings: Settings, piper_engine: Engine, server: VendorServer) -> Iterator[Rig]:
    """A rig on a module's OpenAI ``server`` (reset, answering ``openai_speech`` by default),
    its workers and engines closed and the server's problems checked after the test."""
    server.reset()
    server.default = Reply(200, [openai_speech(piper_engine)])
    configured = Settings(**{"OPENAI_API_KEY": KEY, "openai_speech_base_url": server.base_url})
    openai = OpenAISpeechEngine(vendor_configs(configured)["openai"])
    made = Rig(FlakyEngine(piper_engine), openai, server, settings, engines=[openai])
    try:
        yield made
    finally:
        for ctx in made.made:
            ctx.close()
        for engine in made.engines:
            engine.close()
        problems = list(server.problems)
        server.reset()
    assert not problems, problems


def speak(ctx: WorkerContext, key: str, **fields: Any) -> dict[str, Any]:
    job = {"api_key": key, "text": TEXT, "delivery": "base64", "cache": False, **fields}
    [item] = run_job(job, ctx)
    assert ffprobe_json(base64.b64decode(item["audio_base64"]), "wav")
    return item


def key_for(ctx: WorkerContext) -> str:
    return ctx.tenants.create_tenant("acme", UNLIMITED).api_key


def wait_for_state(ctx: WorkerContext, engine: str, state: str) -> None:
    """Poll the breaker until it is in ``state`` (a generous bound, never an elapsed time)."""
    guard = ctx.engines.guard(engine)
    for _ in range(600):
        if guard.state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"the {engine} breaker stayed {guard.state}, never {state}")


def breaker_gauge(ctx: WorkerContext, engine: str) -> float:
    return ctx.metrics.snapshot()[f'tts_engine_breaker_state{{engine="{engine}"}}']
