"""The same jobs on the real coqui-tts XTTS code (random-weight checkpoint): the handlers do not
care which engine speaks."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from handlers.dispatch import run_job
from shared.engines.base import Engine
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s


@pytest.fixture
def xtts_worker(
    make_worker: Callable[[Engine], WorkerContext], xtts_engine: Engine
) -> WorkerContext:
    return make_worker(xtts_engine)


@pytest.fixture
def xtts_key(xtts_worker: WorkerContext) -> str:
    return xtts_worker.tenants.create_tenant("acme", UNLIMITED).api_key


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Good morning. Thanks for calling."),
        ("ja", "こんにちは。お電話ありがとうございます。"),
        ("zh-cn", "你好。感谢您的来电。"),
    ],
)
def test_xtts_job_in_each_script_gives_24khz_audio(
    xtts_worker: WorkerContext, xtts_key: str, language: str, text: str
) -> None:
    job = {"api_key": xtts_key, "text": text, "language": language, "delivery": "base64"}
    [result] = run_job(job, xtts_worker)
    assert result["engine"] == "xtts" and result["sample_rate"] == 24000
    probe = ffprobe_json(base64.b64decode(result["audio_base64"]), "wav")
    assert int(audio_stream(probe)["sample_rate"]) == 24000
    assert probe_duration_s(probe) == pytest.approx(result["duration_s"], rel=0.05)


def test_xtts_stream_job_chunks_concatenate_to_an_mp3(
    xtts_worker: WorkerContext, xtts_key: str
) -> None:
    job = {"api_key": xtts_key, "text": "First. Second.", "format": "mp3", "delivery": "stream"}
    items = run_job(job, xtts_worker)
    assert len(items) >= 3  # the first segment alone streams in several chunks
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert audio_stream(ffprobe_json(audio, "mp3"))["codec_name"] == "mp3"


def test_xtts_builtin_speakers_are_the_voices(xtts_worker: WorkerContext, xtts_key: str) -> None:
    [voices] = run_job({"action": "voices", "api_key": xtts_key}, xtts_worker)
    ids = [voice["id"] for voice in voices["voices"]]
    assert len(ids) == 2 and voices["default_voice"] in ids
    job = {"api_key": xtts_key, "text": "Hi.", "voice": ids[1], "delivery": "base64"}
    assert run_job(job, xtts_worker)[0]["voice"] == ids[1]
