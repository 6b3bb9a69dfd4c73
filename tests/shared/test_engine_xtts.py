"""XttsEngine on a random-weight XTTS-v2 checkpoint: coqui-tts's real loading and inference code.

The weights are noise, so these tests check what the engine promises (shapes, rates, lengths,
errors, locking), not how the audio sounds. The checkpoint never emits the stop token, so every
segment is exactly the engine's token cap long.
"""

# ruff: noqa: RUF001  (Chinese and Japanese test texts use their own punctuation)
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from shared.engines.base import Engine, Voice
from shared.engines.registry import load_engine
from shared.engines.xtts import XttsEngine, _resolve_device
from shared.errors import EngineUnavailable, InvalidInput, UnsupportedLanguage, VoiceNotFound
from shared.text.limits import XTTS_LANGUAGES
from shared.text.split import split_segments
from tests.xtts_checkpoint import SPEAKERS, XTTS_TEST_MAX_AUDIO_TOKENS

# One GPT audio token is 1024 samples at 22,050 Hz (``gpt_code_stride_len``) at any output rate.
SECONDS_PER_TOKEN = 1024 / 22050
# Enough to run every segment through the model; small, as 10,000 chars are ~100 segments.
LONG_TEXT_MAX_AUDIO_TOKENS = 4

SENTENCES_EN = (
    "The quick brown fox jumps over the lazy dog.",
    "Dr. Smith paid $20 for 3 tickets on the 1st of May, didn't he?",
    "Serverless workers keep the model warm between calls, so a caller hears an answer quickly.",
    "Short one.",
    "This sentence goes on and on, with clauses separated by commas, semicolons; and dashes - "
    "because long run-on sentences are exactly what a splitter must cut at clause boundaries "
    "rather than in the middle of a word, which would sound unnatural to anyone listening",
)
TEXT_JA = (
    "こんにちは。今日はとてもいい天気ですね。東京の桜は三月の終わりごろに咲き始めます。"
    "私たちは朝早く公園へ行って、お弁当を食べながら花見を楽しみました。"
    "句読点のないとても長い文章はどこかで必ず分割しなければならないのでこの文は読点も句点もなく"
    "ずっと続いていきますが分割器はそれでも上限以内の断片に切り分けるはずです"
    "電話の自動応答では短い文を速く返すことが大切です。ありがとうございました。"
)
TEXT_ZH = (
    "你好，世界。今天天气很好，我们一起去公园散步吧！"
    "服务器在两次调用之间保持模型常驻内存，因此来电者可以很快听到回答。"
    "这是一个没有任何标点符号的非常长的句子它必须在某个地方被切开否则模型就会超过字符限制"
    "而切分器应该把它切成不超过上限的片段再交给语音引擎逐段合成"
    "我有3本书和25支笔。谢谢大家！"
)


def _ten_thousand_chars() -> str:
    parts: list[str] = []
    i = 0
    while sum(len(p) + 1 for p in parts) < 10_000:
        parts.append(SENTENCES_EN[i % len(SENTENCES_EN)])
        i += 1
    return " ".join(parts)[:10_000]


def _seconds(engine: Engine, pcm: np.ndarray) -> float:
    return pcm.size / engine.sample_rate


def _assert_audio(pcm: np.ndarray) -> None:
    assert pcm.dtype == np.float32
    assert pcm.ndim == 1
    assert pcm.size > 0
    assert np.isfinite(pcm).all()
    assert float(np.abs(pcm).max()) <= 1.0
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 1e-4, "audio is silent"


@pytest.fixture(scope="module")
def long_text_engine(tiny_xtts_dir: Path) -> XttsEngine:
    return XttsEngine.load(
        tiny_xtts_dir, device="cpu", max_audio_tokens=LONG_TEXT_MAX_AUDIO_TOKENS, warmup=False
    )


@pytest.fixture(scope="module")
def edited_xtts_dir(tiny_xtts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights (symlinked) under a config.json with one sampling value changed."""
    directory = tmp_path_factory.mktemp("xtts-edited")
    for name in ("model.pth", "vocab.json", "speakers_xtts.pth"):
        (directory / name).symlink_to(tiny_xtts_dir / name)
    config = json.loads((tiny_xtts_dir / "config.json").read_text())
    config["temperature"] = 0.5
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_loads_through_coqui_checkpoint_files(xtts_engine: Engine, tiny_xtts_dir: Path) -> None:
    config = json.loads((tiny_xtts_dir / "config.json").read_text())
    assert isinstance(xtts_engine, XttsEngine)
    assert isinstance(xtts_engine, Engine)
    assert xtts_engine.name == "xtts"
    assert xtts_engine.sample_rate == config["model_args"]["output_sample_rate"] == 24000
    assert xtts_engine.languages == XTTS_LANGUAGES == frozenset(config["languages"])
    assert xtts_engine.model_version.startswith("xtts-")


def test_lists_builtin_speakers_as_voices(xtts_engine: Engine) -> None:
    voices = xtts_engine.voices()
    assert [v.id for v in voices] == list(SPEAKERS)
    assert {v.engine for v in voices} == {"xtts"}
    # Built-in voices ship with the weights: the model version versions them.
    assert {v.version for v in voices} == {xtts_engine.model_version}
    assert all(v.conditioning is not None for v in voices)
    # No "Ana Florence" in the test checkpoint: the first speaker is the default.
    assert xtts_engine.default_voice == SPEAKERS[0]


def test_segment_limit_is_the_languages_character_limit(xtts_engine: Engine) -> None:
    assert xtts_engine.segment_limit("en") == 250
    assert xtts_engine.segment_limit("zh-cn") == 82
    assert xtts_engine.segment_limit("ja") == 71


def test_synthesize_returns_float32_audio_as_long_as_the_token_cap(xtts_engine: Engine) -> None:
    voice = xtts_engine.voice(SPEAKERS[1])
    pcm = xtts_engine.synthesize(
        "Hello world, this is a test.", voice=voice, language="en", speed=1.0
    )
    _assert_audio(pcm)
    expected = XTTS_TEST_MAX_AUDIO_TOKENS * SECONDS_PER_TOKEN
    assert _seconds(xtts_engine, pcm) == pytest.approx(expected, rel=0.05)


def test_speed_two_halves_the_duration(xtts_engine: Engine) -> None:
    text, voice = "Speed changes the duration.", xtts_engine.voice(xtts_engine.default_voice)
    normal = xtts_engine.synthesize(text, voice=voice, language="en", speed=1.0)
    fast = xtts_engine.synthesize(text, voice=voice, language="en", speed=2.0)
    assert fast.size / normal.size == pytest.approx(0.5, abs=0.03)


def test_stream_yields_several_chunks_that_add_up_to_the_segment(xtts_engine: Engine) -> None:
    voice = xtts_engine.voice(xtts_engine.default_voice)
    whole = xtts_engine.synthesize("Streaming test.", voice=voice, language="en", speed=1.0)
    chunks = list(xtts_engine.stream("Streaming test.", voice=voice, language="en", speed=1.0))
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.size > 0
    streamed = np.concatenate(chunks)
    _assert_audio(streamed)
    assert streamed.size == pytest.approx(whole.size, rel=0.05)


def test_ten_thousand_english_characters_split_and_all_synthesized(
    long_text_engine: XttsEngine,
) -> None:
    text = _ten_thousand_chars()
    assert len(text) == 10_000
    segments = _synthesize_all(long_text_engine, text, "en")
    assert len(segments) >= 40


@pytest.mark.parametrize(("language", "text"), [("ja", TEXT_JA), ("zh-cn", TEXT_ZH)])
def test_cjk_text_split_and_all_synthesized(
    long_text_engine: XttsEngine, language: str, text: str
) -> None:
    segments = _synthesize_all(long_text_engine, text, language)
    assert len(segments) >= 3


def _synthesize_all(engine: XttsEngine, text: str, language: str) -> list[str]:
    limit = engine.segment_limit(language)
    segments = split_segments(text, limit)
    voice = engine.voice(engine.default_voice)
    for segment in segments:
        assert len(segment) <= limit
        pcm = engine.synthesize(segment, voice=voice, language=language, speed=1.0)
        assert _seconds(engine, pcm) == pytest.approx(
            LONG_TEXT_MAX_AUDIO_TOKENS * SECONDS_PER_TOKEN, rel=0.1
        ), segment
    return segments


def test_segment_over_400_tokens_after_number_expansion_is_split_and_spoken(
    xtts_engine: Engine,
) -> None:
    # 220 characters, within the English limit, but every number becomes a dozen words.
    text = " ".join(["987654321987"] * 17)
    assert len(text) <= xtts_engine.segment_limit("en")
    voice = xtts_engine.voice(xtts_engine.default_voice)
    pcm = xtts_engine.synthesize(text, voice=voice, language="en", speed=1.0)
    one_part = xtts_engine.synthesize("Hello.", voice=voice, language="en", speed=1.0)
    # Every part runs to the token cap, so the audio length counts the parts: more than one.
    assert len(pcm) >= 2 * len(one_part)
    streamed = list(xtts_engine.stream(text, voice=voice, language="en", speed=1.0))
    assert sum(len(chunk) for chunk in streamed) == pytest.approx(len(pcm), rel=0.05)


def test_unknown_voice_is_voice_not_found(xtts_engine: Engine) -> None:
    with pytest.raises(VoiceNotFound, match="available: ") as refused:
        xtts_engine.voice("Nobody")
    assert "Nobody" not in str(refused.value)  # never repeats what was asked
    # A voice resolved for another engine carries no XTTS conditioning.
    foreign = Voice(id="Nobody", name="Nobody", engine="piper", version="piper-1")
    with pytest.raises(VoiceNotFound, match="not an XTTS voice"):
        xtts_engine.synthesize("Hello.", voice=foreign, language="en", speed=1.0)
    with pytest.raises(VoiceNotFound):
        xtts_engine.stream("Hello.", voice=foreign, language="en", speed=1.0)


def test_unknown_language_is_unsupported_language(xtts_engine: Engine) -> None:
    voice = xtts_engine.voice(xtts_engine.default_voice)
    with pytest.raises(UnsupportedLanguage, match="xx"):
        xtts_engine.synthesize("Hello.", voice=voice, language="xx", speed=1.0)
    with pytest.raises(UnsupportedLanguage):
        xtts_engine.stream("Hello.", voice=voice, language="sv", speed=1.0)
    with pytest.raises(UnsupportedLanguage):
        xtts_engine.segment_limit("xx")


@pytest.mark.parametrize(("text", "speed"), [("   ", 1.0), ("Hello.", 0.0), ("Hello.", -1.0)])
def test_blank_text_or_non_positive_speed_is_invalid_input(
    xtts_engine: Engine, text: str, speed: float
) -> None:
    with pytest.raises(InvalidInput):
        voice = xtts_engine.voice(xtts_engine.default_voice)
        xtts_engine.synthesize(text, voice=voice, language="en", speed=speed)


@pytest.mark.parametrize("missing", ["model.pth", "vocab.json", "config.json"])
def test_missing_checkpoint_file_is_engine_unavailable_naming_it(
    tiny_xtts_dir: Path, tmp_path: Path, missing: str
) -> None:
    for name in ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth"):
        if name != missing:
            (tmp_path / name).symlink_to(tiny_xtts_dir / name)
    with pytest.raises(EngineUnavailable, match=missing):
        XttsEngine.load(tmp_path, device="cpu")


def test_corrupt_model_file_is_engine_unavailable(tiny_xtts_dir: Path, tmp_path: Path) -> None:
    for name in ("config.json", "vocab.json"):
        (tmp_path / name).symlink_to(tiny_xtts_dir / name)
    (tmp_path / "model.pth").write_bytes(b"not a torch checkpoint")
    with pytest.raises(EngineUnavailable, match="checkpoint"):
        XttsEngine.load(tmp_path, device="cpu")


def test_cuda_requested_without_cuda_is_engine_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="CUDA"):
        _resolve_device("cuda", cuda_available=False)
    assert _resolve_device("auto", cuda_available=False) == "cpu"
    assert _resolve_device("auto", cuda_available=True) == "cuda"
    with pytest.raises(EngineUnavailable, match="device"):
        _resolve_device("tpu", cuda_available=True)


def test_registry_auto_loads_xtts_and_version_follows_config(
    xtts_engine: Engine, edited_xtts_dir: Path
) -> None:
    engine = load_engine(
        "auto", xtts_model_dir=edited_xtts_dir, xtts_device="cpu", xtts_max_audio_tokens=4
    )
    assert isinstance(engine, XttsEngine)
    assert engine.model_version != xtts_engine.model_version


def test_concurrent_synthesize_from_two_threads_both_succeed(xtts_engine: Engine) -> None:
    voice = xtts_engine.voice(xtts_engine.default_voice)

    def job(text: str) -> np.ndarray:
        return xtts_engine.synthesize(text, voice=voice, language="en", speed=1.0)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(job, ["First caller.", "Second caller."]))
    for pcm in results:
        _assert_audio(pcm)
        assert _seconds(xtts_engine, pcm) == pytest.approx(
            XTTS_TEST_MAX_AUDIO_TOKENS * SECONDS_PER_TOKEN, rel=0.05
        )


def test_open_stream_holds_the_model_until_closed(xtts_engine: Engine) -> None:
    voice = xtts_engine.voice(xtts_engine.default_voice)
    started = time.perf_counter()
    xtts_engine.synthesize("Timing.", voice=voice, language="en", speed=1.0)
    one_job_s = time.perf_counter() - started

    stream = cast(
        "Generator[np.ndarray, None, None]",
        xtts_engine.stream("Held.", voice=voice, language="en", speed=1.0),
    )
    next(stream)  # the generator now holds the model lock
    done = threading.Event()
    other = threading.Thread(
        target=lambda: (
            xtts_engine.synthesize("Waiting.", voice=voice, language="en", speed=1.0),
            done.set(),
        )
    )
    other.start()
    # Without the lock the other job would finish within about one job's time.
    assert not done.wait(timeout=max(3 * one_job_s, 3.0)), "a job ran while a stream held the model"
    stream.close()
    assert done.wait(timeout=120), "closing the stream did not release the model"
    other.join()


def test_missing_coqui_package_is_engine_unavailable_naming_the_extra(
    tiny_xtts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "TTS.tts.models.xtts", None)  # as without .[xtts]
    with pytest.raises(EngineUnavailable, match=re.escape("pip install -e .[xtts]")):
        load_engine("xtts", xtts_model_dir=tiny_xtts_dir, xtts_device="cpu", xtts_warmup=False)


def test_model_version_follows_contents_not_file_times(tiny_xtts_dir: Path) -> None:
    from shared.engines.xtts import _model_version

    before = _model_version(tiny_xtts_dir)
    os.utime(tiny_xtts_dir / "model.pth", (1, 1))  # another worker's copy, another mtime
    assert _model_version(tiny_xtts_dir) == before


def test_to_device_cpu_keeps_the_engine_speaking(xtts_engine: Engine) -> None:
    assert isinstance(xtts_engine, XttsEngine)
    xtts_engine.to_device("cpu")
    assert xtts_engine.device == "cpu"
    voice = xtts_engine.voice(xtts_engine.default_voice)
    assert voice.conditioning.gpt_cond_latent.device.type == "cpu"  # type: ignore[attr-defined]
    _assert_audio(xtts_engine.synthesize("Still speaking.", voice=voice, language="en", speed=1.0))


def test_to_device_without_cuda_is_engine_unavailable_and_moves_nothing(
    xtts_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    assert isinstance(xtts_engine, XttsEngine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # any machine, as without
    with pytest.raises(EngineUnavailable, match="CUDA"):
        xtts_engine.to_device("cuda")
    with pytest.raises(EngineUnavailable, match="unknown XTTS device"):
        xtts_engine.to_device("tpu")
    assert xtts_engine.device == "cpu"
    xtts_engine.to_device("auto")  # no CUDA: auto stays on the CPU
    assert xtts_engine.device == "cpu"


def test_to_device_waits_while_a_stream_holds_the_model(xtts_engine: Engine) -> None:
    assert isinstance(xtts_engine, XttsEngine)
    voice = xtts_engine.voice(xtts_engine.default_voice)
    stream = cast(
        "Generator[np.ndarray, None, None]",
        xtts_engine.stream("Held.", voice=voice, language="en", speed=1.0),
    )
    next(stream)  # the generator now holds the model lock
    moved = threading.Event()
    mover = threading.Thread(target=lambda: (xtts_engine.to_device("cpu"), moved.set()))
    mover.start()
    # Unlocked, a move to the device the model is already on takes milliseconds.
    assert not moved.wait(timeout=2.0), "the model moved while a stream was using it"
    stream.close()
    assert moved.wait(timeout=60), "closing the stream did not let the move through"
    mover.join()
