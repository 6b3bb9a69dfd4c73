"""ogg_opus through libopus (PyAV): real Piper speech in, files and streams that ffprobe reads as
mono Opus in Ogg, at the bitrate chosen per rate, decoding to the same samples streamed or whole."""

from __future__ import annotations

import numpy as np
import pytest

from shared.audio.encode import encode
from shared.audio.formats import AudioFormat
from shared.audio.resample import resample
from shared.audio.voice_note import opus_bitrate
from shared.engines.base import Engine, Pcm
from tests.audio_probe import audio_stream, ffmpeg_decode, ffprobe_json, probe_duration_s
from tests.shared.test_audio_formats import opus_input_rate
from tests.shared.test_audio_stream import stream_encode

OPUS = AudioFormat.OGG_OPUS
# Every Opus rate the job contract takes (SUPPORTED_SAMPLE_RATES & OPUS_RATES).
RATES = [8000, 16000, 24000, 48000]
TEXT = "Your order shipped this morning and should arrive on Thursday."


@pytest.fixture(scope="module")
def speech(piper_engine: Engine) -> tuple[Pcm, int]:
    """One sentence of real Piper speech (~3 s) and its rate (22,050 Hz, not an Opus rate)."""
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(TEXT, voice=voice, language="en", speed=1.0)
    return pcm, piper_engine.sample_rate


def assert_mono_opus_in_ogg(data: bytes, rate: int, seconds: float, *, slack_s: float) -> None:
    """What ffprobe must say of any Opus file we make: Ogg, Opus, mono, coded at ``rate``."""
    probe = ffprobe_json(data, "ogg")
    stream = audio_stream(probe)
    assert probe["format"]["format_name"] == "ogg"
    assert (stream["codec_name"], stream["channels"]) == ("opus", 1)
    assert opus_input_rate(data) == (1, rate)
    assert probe_duration_s(probe) == pytest.approx(seconds, abs=slack_s)


@pytest.mark.parametrize("rate", RATES)
def test_whole_file_and_stream_are_mono_opus_in_ogg_as_long_as_the_speech(
    speech: tuple[Pcm, int], rate: int
) -> None:
    pcm, in_rate = speech
    seconds = pcm.size / in_rate
    whole = encode(pcm, in_rate=in_rate, fmt=OPUS, out_rate=rate)
    streamed, early = stream_encode(pcm, OPUS, in_rate, rate)

    # Pre-skip and the last granule position trim the codec's delay and padding: 20 ms (one
    # Opus frame) of slack covers the resampler's rounding.
    assert_mono_opus_in_ogg(whole, rate, seconds, slack_s=0.02)
    assert_mono_opus_in_ogg(streamed, rate, seconds, slack_s=0.02)
    assert early / len(streamed) > 0.8  # pages leave while the speech is still coming


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_stream_without_resampling_decodes_to_the_whole_files_exact_samples(
    speech: tuple[Pcm, int], rate: int
) -> None:
    source = resample(speech[0], speech[1], rate)
    streamed, _ = stream_encode(source, OPUS, rate, rate)
    whole = encode(source, in_rate=rate, fmt=OPUS, out_rate=rate)
    # Same Opus packets, only cut into 200 ms pages instead of 1 s ones.
    assert streamed != whole
    np.testing.assert_array_equal(ffmpeg_decode(streamed, "ogg"), ffmpeg_decode(whole, "ogg"))


@pytest.mark.parametrize("rate", RATES)
def test_speech_is_coded_near_the_bitrate_chosen_for_its_rate(
    speech: tuple[Pcm, int], rate: int
) -> None:
    pcm, in_rate = speech
    data = encode(pcm, in_rate=in_rate, fmt=OPUS, out_rate=rate)
    kbps = len(data) * 8 / (pcm.size / in_rate) / 1000
    # Measured 15.8, 23.7, 32.4 and 33.5 kbps (VBR plus Ogg overhead). libopus's own default,
    # 64 kbps, or libsndfile's (61 kbps at 48 kHz) fails this.
    assert 0.85 * opus_bitrate(rate) / 1000 < kbps < 1.2 * opus_bitrate(rate) / 1000


def test_the_same_audio_always_gives_the_same_bytes(speech: tuple[Pcm, int]) -> None:
    # No random Ogg serial number (libsndfile drew one per file): a cached file and a fresh one
    # are the same bytes.
    pcm, in_rate = speech
    first = encode(pcm, in_rate=in_rate, fmt=OPUS, out_rate=24000)
    assert encode(pcm, in_rate=in_rate, fmt=OPUS, out_rate=24000) == first
