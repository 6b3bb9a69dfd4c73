"""``HttpWorker`` against this product's own HTTP app on loopback, with real Piper speech."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack, suppress

import pytest
from websockets.asyncio.server import ServerConnection, serve

from edge.workers.base import WorkerError
from edge.workers.build import build_worker_client
from edge.workers.http_api import HttpWorker
from edge.workers.modal import ModalWorker
from shared.config import Settings
from shared.engines.base import Engine
from tests.audio_probe import audio_stream, ffmpeg_decode, ffprobe_json, probe_duration_s
from tests.edge.worker_fixtures import CountingTransport, FailingEngine, edge_settings, speech
from tests.engine_wrappers import GatedEngine
from tests.entrypoints.test_ws_stream import ALPHA, held_app, threads_waiting_for_audio, wait_until
from tests.entrypoints.web_helpers import Served, Start
from tests.servers import free_port
from tests.worker_fixtures import usage_rows

pytestmark = pytest.mark.anyio
MULAW_RATE = 8000


@pytest.fixture
async def worker(served: Served) -> AsyncIterator[HttpWorker]:
    client = HttpWorker(str(served.http.base_url), timeout_s=60, retries=1)
    yield client
    await client.aclose()


async def test_a_greeting_is_cached_only_once_warmed_and_its_url_serves_mp3(
    worker: HttpWorker, served: Served, key: str
) -> None:
    greeting = speech(key, "Thanks for calling Acme.")
    assert await worker.cached_url(greeting) is None  # greetings.get never synthesizes
    await worker.warm(greeting)
    url = await worker.cached_url(greeting)
    assert url is not None
    audio = served.http.get(url)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
    assert audio_stream(ffprobe_json(audio.content, "mp3"))["codec_name"] == "mp3"


async def test_synthesize_url_gives_a_url_that_serves_the_audio(
    worker: HttpWorker, served: Served, key: str
) -> None:
    url = await worker.synthesize_url(speech(key, "Your table is ready.", "wav"))
    audio = served.http.get(url)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    probe = ffprobe_json(audio.content, "wav")
    assert audio_stream(probe)["codec_name"] == "pcm_s16le" and probe_duration_s(probe) > 0.5


async def test_a_stream_is_every_byte_of_raw_mulaw_the_worker_made(
    worker: HttpWorker, served: Served, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = "Hello from the stream. It carries raw telephone audio."
    with caplog.at_level(logging.DEBUG):
        chunks = [chunk async for chunk in worker.stream(speech(key, text, "mulaw"))]
    assert_whole_mulaw(chunks, served)
    assert caplog.records and key not in caplog.text  # not even at DEBUG (websockets logs headers)


def assert_whole_mulaw(chunks: list[bytes], served: Served) -> None:
    """``chunks`` are all the audio of the one job the worker logged: raw 8 kHz mu-law, one
    byte per sample and no header, so its length is its duration, and it holds speech."""
    audio = b"".join(chunks)
    assert chunks and all(chunks)
    [row] = usage_rows(served.ctx)
    assert row["delivery"] == "stream" and row["audio_bytes"] == len(audio)
    assert abs(len(audio) / MULAW_RATE - row["audio_seconds"]) < 0.01
    samples = ffmpeg_decode(audio, "ulaw", input_args=("-f", "mulaw", "-ar", str(MULAW_RATE)))
    assert len(samples) == len(audio) and int(abs(samples).max()) > 1000  # speech, not silence


async def test_closing_the_stream_closes_the_socket_and_the_render_stops(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    served, recording, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    worker = HttpWorker(str(served.http.base_url), timeout_s=60, retries=0)
    stream = worker.stream(speech(served.new_key(), ALPHA, "mulaw"))
    assert await anext(stream)  # audio of the first sentences
    assert hold.reached.wait(timeout=60)  # the engine is held mid-reply
    await stream.aclose()  # type: ignore[attr-defined]
    wait_until(lambda: threads_waiting_for_audio() == 0, "the worker's render released")
    hold.release.set()
    await worker.aclose()
    began = {text for kind, text in recording.events if kind == "begin"}
    assert "Alpha sentence number 3." not in began
    [row] = usage_rows(served.ctx)
    assert row["error_code"] == "cancelled"


async def test_a_worker_that_fails_mid_reply_raises_after_the_audio_it_made(
    start: Start, piper_engine: Engine
) -> None:
    served = start(engine=FailingEngine(piper_engine, good=1))
    worker = HttpWorker(str(served.http.base_url), timeout_s=60, retries=0)
    heard: list[bytes] = []
    with pytest.raises(WorkerError) as broke:
        async for chunk in worker.stream(speech(served.new_key(), ALPHA, "mulaw")):
            heard.append(chunk)
    await worker.aclose()
    assert heard  # the first sentence came through before the failure
    assert broke.value.reason == "failed"


class Severable:
    """A TCP forwarder in front of the app that the test can cut: the connection lost."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self._server.close()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
            dst.close()

        with suppress(OSError):  # a cut connection resets
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_connection_lost_mid_reply_raises(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    served, _, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    port = served.http.base_url.port
    assert port is not None
    link = Severable(port)
    async with link as base:
        worker = HttpWorker(base, timeout_s=60, retries=0)
        stream = worker.stream(speech(served.new_key(), ALPHA, "mulaw"))
        assert await anext(stream)  # the reply has started
        assert hold.reached.wait(timeout=60)  # and the worker is mid-render
        link.cut()
        with pytest.raises(WorkerError) as lost:
            async for _ in stream:
                pass
        await worker.aclose()
    assert lost.value.reason == "failed" and "before done" in lost.value.message


async def test_a_bad_key_is_refused_at_once_and_never_retried(served: Served) -> None:
    transport = CountingTransport()
    worker = HttpWorker(str(served.http.base_url), timeout_s=30, retries=3, transport=transport)
    wrong = speech("tts_not-a-real-key", "Secret words for nobody.")
    errors = []
    for call in (worker.cached_url, worker.warm, worker.synthesize_url):
        with pytest.raises(WorkerError) as refused:
            await call(wrong)
        errors.append(refused.value)
    with pytest.raises(WorkerError) as refused:
        async for _ in worker.stream(wrong):
            pass
    errors.append(refused.value)
    await worker.aclose()
    assert [error.reason for error in errors] == ["refused"] * 4
    assert transport.attempts == ["POST /runsync", "POST /runsync", "POST /v1/synthesize-url"]
    for error in errors:
        assert "not-a-real-key" not in str(error) and "Secret words" not in str(error)


async def test_a_dead_port_is_unavailable_after_the_bounded_retries() -> None:
    transport = CountingTransport()
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    worker = HttpWorker(base, timeout_s=30, retries=2, transport=transport)
    with pytest.raises(WorkerError) as down:
        await worker.synthesize_url(speech("tts_key", "Anyone there?"))
    assert down.value.reason == "unavailable"
    assert transport.attempts == ["POST /v1/synthesize-url"] * 3
    with pytest.raises(WorkerError) as down:
        async for _ in worker.stream(speech("tts_key", "Anyone there?", "mulaw")):
            pass
    assert down.value.reason == "unavailable"
    await worker.aclose()


async def test_a_slow_worker_times_out_at_timeout_s_while_it_still_renders(
    start: Start, piper_engine: Engine
) -> None:
    gated = GatedEngine(piper_engine)
    served = start(engine=gated)
    key = served.new_key()
    worker = HttpWorker(str(served.http.base_url), timeout_s=1, retries=1)
    try:
        with pytest.raises(WorkerError) as slow:
            await worker.synthesize_url(speech(key, "This takes a while."))
        assert slow.value.reason == "timeout"
        assert gated.entered.is_set() and not gated.gate.is_set()  # still held when it came
        with pytest.raises(WorkerError) as slow:
            async for _ in worker.stream(speech(key, "So does this.", "mulaw")):
                pass
        assert slow.value.reason == "timeout"
    finally:
        gated.gate.set()
        await worker.aclose()


def test_the_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpWorker("ftp://127.0.0.1", timeout_s=1, retries=0)


async def test_build_makes_an_http_client_for_the_configured_url(served: Served, key: str) -> None:
    settings = edge_settings(f'kind = "http"\nurl = "{served.http.base_url}"\ntimeout_s = 60')
    client = build_worker_client(settings)
    assert type(client) is HttpWorker and not isinstance(client, ModalWorker)
    url = await client.synthesize_url(speech(key, "Built from the configuration."))
    await client.aclose()
    assert served.http.get(url).headers["content-type"] == "audio/mpeg"


async def test_a_refusal_closed_before_the_job_is_sent_keeps_its_code() -> None:
    """The worker refuses a wrong key right after the upgrade, so its error message and close
    may beat the job onto the wire: the close (4401, reason the code) alone says refused."""

    async def refuse(connection: ServerConnection) -> None:
        await connection.close(4401, "unauthorized")

    async with serve(refuse, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        worker = HttpWorker(f"http://127.0.0.1:{port}", timeout_s=30, retries=3)
        with pytest.raises(WorkerError) as refused:
            async for _ in worker.stream(speech("tts_key", "Anyone there?", "mulaw")):
                pass
        await worker.aclose()
    assert refused.value.reason == "refused" and "unauthorized" in refused.value.message
