"""Raw formats, mu-law exactness, sample conversion and the small helpers of shared.audio.encode."""

from __future__ import annotations

import audioop  # deprecated, still in 3.11/3.12: the reference mu-law implementation
import io
import wave

import numpy as np
import pytest

from shared.audio.encode import (
    encode,
    float_to_int16,
    int16_to_mulaw,
    pcm_duration_s,
    silence,
)
from shared.audio.formats import FORMAT_SPECS, AudioFormat
from shared.audio.resample import resample
from shared.errors import InternalError, InvalidInput
from tests.audio_probe import (
    audio_stream,
    correlation,
    ffmpeg_decode,
    ffprobe_json,
    sine_sweep,
)

SIGNAL_S = 3.0


# --- pcm16 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 24000), (22050, 16000), (22050, 48000)])
def test_pcm16_is_two_little_endian_bytes_per_sample_at_out_rate(
    in_rate: int, out_rate: int
) -> None:
    source = sine_sweep(SIGNAL_S, in_rate)
    data = encode(source, in_rate=in_rate, fmt=AudioFormat.PCM16, out_rate=out_rate)

    assert len(data) == 2 * round(SIGNAL_S * out_rate)
    samples = np.frombuffer(data, dtype="<i2")
    assert correlation(samples, resample(source, in_rate, out_rate)) > 0.9999


def test_pcm16_decodes_with_ffmpeg_as_s16le() -> None:
    source = sine_sweep(SIGNAL_S, 24000)
    data = encode(source, in_rate=24000, fmt=AudioFormat.PCM16, out_rate=24000)
    decoded = ffmpeg_decode(data, "pcm", input_args=("-f", "s16le", "-ar", "24000", "-ac", "1"))
    assert decoded.size == source.size
    assert correlation(decoded, source) > 0.9999


# --- mu-law ----------------------------------------------------------------------------------


def test_mulaw_matches_audioop_for_every_int16_value() -> None:
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    assert int16_to_mulaw(every_sample) == audioop.lin2ulaw(every_sample.tobytes(), 2)


@pytest.mark.parametrize("in_rate", [22050, 24000])
def test_mulaw_is_one_byte_per_sample_at_8000_and_matches_audioop(in_rate: int) -> None:
    source = sine_sweep(SIGNAL_S, in_rate)
    data = encode(source, in_rate=in_rate, fmt=AudioFormat.MULAW, out_rate=8000)

    assert len(data) == round(SIGNAL_S * 8000)
    reference = audioop.lin2ulaw(float_to_int16(resample(source, in_rate, 8000)).tobytes(), 2)
    assert data == reference


def test_mulaw_decodes_with_ffmpeg_to_the_source_signal() -> None:
    source = sine_sweep(SIGNAL_S, 24000)
    data = encode(source, in_rate=24000, fmt=AudioFormat.MULAW, out_rate=8000)
    decoded = ffmpeg_decode(data, "ulaw", input_args=("-f", "mulaw", "-ar", "8000", "-ac", "1"))
    assert decoded.size == len(data)
    # mu-law keeps ~38 dB SNR: well above 0.99 for a clean encoder, near 0 for a scrambled one.
    assert correlation(decoded, resample(source, 24000, 8000)) > 0.99


# --- wav header ------------------------------------------------------------------------------


@pytest.mark.parametrize("out_rate", [8000, 22050, 44100])
def test_wav_header_describes_pcm16_mono_with_exact_sizes(out_rate: int) -> None:
    data = encode(
        sine_sweep(SIGNAL_S, 24000), in_rate=24000, fmt=AudioFormat.WAV, out_rate=out_rate
    )

    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == out_rate
        assert wav.getnframes() == round(SIGNAL_S * out_rate)
    assert int.from_bytes(data[4:8], "little") == len(data) - 8  # RIFF chunk size
    assert len(data) == 44 + 2 * round(SIGNAL_S * out_rate)


# --- sample conversion -----------------------------------------------------------------------


def test_float_to_int16_clips_instead_of_wrapping() -> None:
    loud = np.array([1.5, -1.5, 1.0, -1.0, 0.0], dtype=np.float32)
    assert float_to_int16(loud).tolist() == [32767, -32767, 32767, -32767, 0]


def test_float_to_int16_turns_non_finite_samples_into_silence_or_full_scale() -> None:
    bad = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    assert float_to_int16(bad).tolist() == [0, 32767, -32767]


def test_resampling_overshoot_is_clipped_in_the_output() -> None:
    # A full-scale square wave rings past +-1 when resampled; the encoder must saturate it.
    square = np.sign(np.sin(2 * np.pi * 300 * np.arange(24000) / 24000)).astype(np.float32)
    assert np.abs(resample(square, 24000, 8000)).max() > 1.0
    data = encode(square, in_rate=24000, fmt=AudioFormat.PCM16, out_rate=8000)
    samples = np.frombuffer(data, dtype="<i2")
    assert samples.max() == 32767
    assert samples.min() == -32767


def test_stereo_input_is_rejected_as_an_internal_error() -> None:
    stereo = np.zeros((100, 2), dtype=np.float32)
    with pytest.raises(InternalError, match="mono"):
        encode(stereo, in_rate=24000, fmt=AudioFormat.WAV, out_rate=24000)


@pytest.mark.parametrize(
    "fmt",
    [
        AudioFormat.WAV,
        AudioFormat.MP3,
        AudioFormat.OGG_OPUS,
        AudioFormat.FLAC,
        AudioFormat.AAC,
        AudioFormat.VOICE_NOTE,
    ],
)
def test_empty_input_still_gives_a_valid_container(fmt: AudioFormat) -> None:
    empty = np.zeros(0, dtype=np.float32)
    data = encode(empty, in_rate=24000, fmt=fmt, out_rate=24000)
    assert audio_stream(ffprobe_json(data, FORMAT_SPECS[fmt].extension))["channels"] == 1


@pytest.mark.parametrize("fmt", [AudioFormat.PCM16, AudioFormat.MULAW])
def test_empty_input_gives_empty_raw_output(fmt: AudioFormat) -> None:
    out_rate = 8000
    assert encode(np.zeros(0, dtype=np.float32), in_rate=24000, fmt=fmt, out_rate=out_rate) == b""


# --- helpers ---------------------------------------------------------------------------------


def test_silence_has_the_requested_length_and_is_zero() -> None:
    pause = silence(0.25, 22050)
    assert pause.dtype == np.float32
    assert pause.size == round(0.25 * 22050)
    assert not pause.any()


def test_negative_silence_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="silence"):
        silence(-0.1, 24000)


def test_pcm_duration_is_samples_over_rate() -> None:
    assert pcm_duration_s(36000, 24000) == 1.5
