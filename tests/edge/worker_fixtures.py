"""Helpers for the worker clients' tests: a speech for a key, a transport that counts what it
is handed, edge settings naming a worker, and an engine that fails mid-reply."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
from pydantic import SecretStr

from edge.config import EdgeSettings, parse_config, read_secrets
from edge.workers.base import Speech, SpeechFormat
from shared.engines.base import Engine, Pcm, Voice
from tests.engine_wrappers import WrappedEngine


def speech(key: str, text: str, fmt: SpeechFormat = "mp3", **fields: object) -> Speech:
    return Speech(api_key=SecretStr(key), text=text, format=fmt, **fields)  # type: ignore[arg-type]


class CountingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, counting the requests it is handed: each attempt is one, so a
    test counts retries without reading a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)


def edge_settings(worker: str, **worker_secrets: str) -> EdgeSettings:
    """Settings with one business and ``worker`` as the ``[worker]`` table's TOML lines,
    its secrets (variable -> value) in the environment."""
    config = parse_config(
        f"""
public_base_url = "https://edge.example.com"
[worker]
{worker}
[businesses.acme]
api_key_env = "ACME_TTS_API_KEY"
greeting = "Thanks for calling Acme."
fallback_text = "One moment please."
responder_url = "https://acme.example.com/reply"
""",
        kind="toml",
    )
    environ = {"TWILIO_AUTH_TOKEN": "twilio-token", "ACME_TTS_API_KEY": "tts_acme"}
    return EdgeSettings(config=config, secrets=read_secrets(config, environ | worker_secrets))


class FailingEngine(WrappedEngine):
    """A real engine that fails from its ``good``-th render on (the worker renders a reply a
    sentence at a time): a worker that breaks mid-reply."""

    def __init__(self, engine: Engine, *, good: int = 1) -> None:
        super().__init__(engine)
        self._left = good
        self._lock = threading.Lock()

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        self._spend()
        return super().synthesize(text, voice=voice, language=language, speed=speed)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        self._spend()
        return super().stream(text, voice=voice, language=language, speed=speed)

    def _spend(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left < 0:
                raise RuntimeError("the engine fell over mid-reply")
