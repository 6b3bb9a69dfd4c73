"""Format table, sample-rate resolution, and whole-file encodings as ffprobe sees them."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from shared.audio.encode import encode
from shared.audio.formats import (
    AAC_RATES,
    FORMAT_SPECS,
    MP3_RATES,
    OPUS_RATES,
    SUPPORTED_SAMPLE_RATES,
    AudioFormat,
    parse_format,
    resolve_sample_rate,
)
from shared.audio.resample import resample
from shared.errors import UnsupportedFormat
from tests.audio_probe import (
    audio_stream,
    correlation,
    ffmpeg_decode,
    ffprobe_json,
    probe_duration_s,
    sine_sweep,
)

# The engines' native rates (Piper 22,050 Hz, XTTS 24,000 Hz).
ENGINE_RATES = (22050, 24000)
# 4 s, not less: MP3 without a LAME info tag counts encoder delay + frame padding as duration
# (~160 ms at 8 kHz), which must stay under the 5 % tolerance.
SIGNAL_S = 4.0
DURATION_TOLERANCE = 0.05

CODEC_NAMES = {
    AudioFormat.WAV: "pcm_s16le",
    AudioFormat.MP3: "mp3",
    AudioFormat.OGG_OPUS: "opus",
    AudioFormat.FLAC: "flac",
    AudioFormat.VOICE_NOTE: "opus",
}
CONTAINER_CASES = [
    (fmt, rate)
    for fmt, rates in (
        (AudioFormat.WAV, (8000, 16000, 22050, 24000, 44100, 48000)),
        (AudioFormat.FLAC, (8000, 16000, 22050, 24000, 48000)),
        (AudioFormat.MP3, (8000, 16000, 22050, 24000, 44100, 48000)),
        (AudioFormat.OGG_OPUS, (8000, 16000, 24000, 48000)),
        (AudioFormat.VOICE_NOTE, (24000,)),
    )
    for rate in rates
]


def opus_input_rate(data: bytes) -> tuple[int, int]:
    """(channels, input sample rate) from the OpusHead packet.

    ffprobe always reports 48000 Hz for Opus (the decoder's rate); the rate the audio was encoded
    at is only recorded in the header, RFC 7845 section 5.1: magic(8) version(1) channels(1)
    pre-skip(2) input rate(4, LE).
    """
    at = data.find(b"OpusHead")
    assert at >= 0, "no OpusHead packet"
    channels = data[at + 9]
    (rate,) = struct.unpack_from("<I", data, at + 12)
    return channels, rate


# --- format table ----------------------------------------------------------------------------


def test_every_format_has_a_spec_with_its_content_type() -> None:
    assert set(FORMAT_SPECS) == set(AudioFormat)
    assert {fmt: spec.content_type for fmt, spec in FORMAT_SPECS.items()} == {
        AudioFormat.WAV: "audio/wav",
        AudioFormat.MP3: "audio/mpeg",
        AudioFormat.OGG_OPUS: "audio/ogg",
        AudioFormat.FLAC: "audio/flac",
        AudioFormat.PCM16: "audio/pcm",
        AudioFormat.MULAW: "audio/x-mulaw",
        AudioFormat.AAC: "audio/aac",
        AudioFormat.VOICE_NOTE: "audio/ogg",
    }


def test_format_specs_are_read_only() -> None:
    with pytest.raises(TypeError):
        FORMAT_SPECS[AudioFormat.WAV] = FORMAT_SPECS[AudioFormat.MP3]  # type: ignore[index]


def test_parse_format_accepts_names_and_rejects_unknown_with_choices() -> None:
    assert parse_format("ogg_opus") is AudioFormat.OGG_OPUS
    assert parse_format("aac") is AudioFormat.AAC
    with pytest.raises(
        UnsupportedFormat,
        match=r"'m4a'; choose one of wav, mp3, ogg_opus, flac, pcm16, mulaw, aac, voice_note$",
    ):
        parse_format("m4a")


# --- resolve_sample_rate ---------------------------------------------------------------------


@pytest.mark.parametrize("native", ENGINE_RATES)
@pytest.mark.parametrize("fmt", [AudioFormat.WAV, AudioFormat.FLAC, AudioFormat.PCM16])
def test_any_rate_formats_default_to_native_rate(fmt: AudioFormat, native: int) -> None:
    assert resolve_sample_rate(fmt, None, native) == native


@pytest.mark.parametrize("fmt", [AudioFormat.WAV, AudioFormat.FLAC, AudioFormat.PCM16])
@pytest.mark.parametrize("requested", [7999, 48001, 96000])
def test_any_rate_formats_reject_rates_outside_8k_to_48k(fmt: AudioFormat, requested: int) -> None:
    with pytest.raises(UnsupportedFormat, match=r"8000\.\.48000 Hz"):
        resolve_sample_rate(fmt, requested, 24000)


def test_mulaw_is_always_8000_hz() -> None:
    assert resolve_sample_rate(AudioFormat.MULAW, None, 24000) == 8000
    assert resolve_sample_rate(AudioFormat.MULAW, 8000, 22050) == 8000


def test_mulaw_rejects_other_requested_rates_naming_8000() -> None:
    with pytest.raises(
        UnsupportedFormat, match="mulaw does not support 16000 Hz; use only 8000 Hz"
    ):
        resolve_sample_rate(AudioFormat.MULAW, 16000, 24000)


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        (24000, 24000),
        (16000, 16000),
        (22050, 24000),
        (44100, 48000),
        (11025, 12000),
        (96000, 48000),
    ],
)
def test_opus_default_is_native_or_next_opus_rate_up(native: int, expected: int) -> None:
    assert resolve_sample_rate(AudioFormat.OGG_OPUS, None, native) == expected


@pytest.mark.parametrize("requested", [22050, 44100, 32000])
def test_opus_rejects_non_opus_rates(requested: int) -> None:
    with pytest.raises(UnsupportedFormat, match="8000, 12000, 16000, 24000, 48000"):
        resolve_sample_rate(AudioFormat.OGG_OPUS, requested, 24000)


@pytest.mark.parametrize(("native", "expected"), [(22050, 22050), (24000, 24000), (20000, 22050)])
@pytest.mark.parametrize("fmt", [AudioFormat.MP3, AudioFormat.AAC])
def test_mpeg_default_is_native_or_next_mpeg_rate_up(
    fmt: AudioFormat, native: int, expected: int
) -> None:
    assert resolve_sample_rate(fmt, None, native) == expected


@pytest.mark.parametrize("requested", [7000, 96000, 23000])
def test_mp3_rejects_non_mpeg_rates(requested: int) -> None:
    with pytest.raises(UnsupportedFormat, match="mp3 does not support"):
        resolve_sample_rate(AudioFormat.MP3, requested, 24000)


def test_requested_rate_wins_over_native_when_allowed() -> None:
    assert resolve_sample_rate(AudioFormat.WAV, 16000, 24000) == 16000
    assert resolve_sample_rate(AudioFormat.OGG_OPUS, 48000, 22050) == 48000


def test_contract_rates_are_carried_by_every_any_rate_format_mp3_and_aac() -> None:
    for rate in SUPPORTED_SAMPLE_RATES:
        for fmt in (
            AudioFormat.WAV,
            AudioFormat.FLAC,
            AudioFormat.PCM16,
            AudioFormat.MP3,
            AudioFormat.AAC,
        ):
            assert resolve_sample_rate(fmt, rate, 24000) == rate
    assert SUPPORTED_SAMPLE_RATES <= MP3_RATES
    assert SUPPORTED_SAMPLE_RATES <= AAC_RATES
    contract_opus_rates = SUPPORTED_SAMPLE_RATES & OPUS_RATES
    assert contract_opus_rates == {8000, 16000, 24000, 48000}


# --- whole-file encodings, checked by ffprobe ------------------------------------------------


@pytest.mark.parametrize("in_rate", ENGINE_RATES)
@pytest.mark.parametrize(("fmt", "out_rate"), CONTAINER_CASES)
def test_container_encoding_probes_as_mono_at_requested_rate_and_duration(
    fmt: AudioFormat, out_rate: int, in_rate: int
) -> None:
    data = encode(sine_sweep(SIGNAL_S, in_rate), in_rate=in_rate, fmt=fmt, out_rate=out_rate)

    probe = ffprobe_json(data, FORMAT_SPECS[fmt].extension)
    stream = audio_stream(probe)
    assert stream["codec_name"] == CODEC_NAMES[fmt]
    assert stream["channels"] == 1
    if CODEC_NAMES[fmt] == "opus":
        assert opus_input_rate(data) == (1, out_rate)
    else:
        assert int(stream["sample_rate"]) == out_rate
    assert probe_duration_s(probe) == pytest.approx(SIGNAL_S, rel=DURATION_TOLERANCE)


@pytest.mark.parametrize("out_rate", [8000, 22050, 48000])
@pytest.mark.parametrize("fmt", [AudioFormat.WAV, AudioFormat.FLAC])
def test_lossless_containers_decode_to_the_resampled_source(
    fmt: AudioFormat, out_rate: int
) -> None:
    source = sine_sweep(SIGNAL_S, 24000)
    expected = resample(source, 24000, out_rate)

    data = encode(source, in_rate=24000, fmt=fmt, out_rate=out_rate)
    decoded = ffmpeg_decode(data, FORMAT_SPECS[fmt].extension)

    assert decoded.size == expected.size
    # PCM16 quantisation is the only loss: at most one LSB away from the rounded source.
    np.testing.assert_allclose(decoded / 32767.0, expected, atol=1.5 / 32767)


@pytest.mark.parametrize(("fmt", "out_rate"), [(AudioFormat.MP3, 8000), (AudioFormat.MP3, 24000)])
def test_mp3_decodes_at_the_requested_rate_not_lames_default(
    fmt: AudioFormat, out_rate: int
) -> None:
    # LAME picks its own output rate from the bitrate unless told (24 kHz at 32 kbps -> 22,050).
    data = encode(sine_sweep(SIGNAL_S, 22050), in_rate=22050, fmt=fmt, out_rate=out_rate)
    decoded = ffmpeg_decode(data, "mp3")
    assert int(audio_stream(ffprobe_json(data, "mp3"))["sample_rate"]) == out_rate
    assert decoded.size / out_rate == pytest.approx(SIGNAL_S, rel=DURATION_TOLERANCE)


@pytest.mark.parametrize("out_rate", [16000, 24000, 48000])
def test_opus_keeps_the_waveform_aligned(out_rate: int) -> None:
    source = sine_sweep(SIGNAL_S, 24000)
    data = encode(source, in_rate=24000, fmt=AudioFormat.OGG_OPUS, out_rate=out_rate)
    decoded = ffmpeg_decode(data, "ogg", rate=24000)
    # The decoder trims the pre-skip, so samples line up with no search; noise scores near 0.
    assert decoded.size == pytest.approx(source.size, abs=24)
    assert correlation(decoded, source) > 0.95


def test_mp3_keeps_the_waveform_after_its_encoder_delay() -> None:
    source = sine_sweep(SIGNAL_S, 24000)
    decoded = ffmpeg_decode(
        encode(source, in_rate=24000, fmt=AudioFormat.MP3, out_rate=24000), "mp3"
    )
    # No LAME tag, so the decoder keeps the encoder delay (576 + 529 samples); find and skip it.
    lags = range(0, 2400)
    best = max(lags, key=lambda lag: correlation(decoded[lag : lag + 24000], source[:24000]))
    assert correlation(decoded[best:], source) > 0.9


@pytest.mark.parametrize(
    ("fmt", "out_rate"),
    [
        (AudioFormat.OGG_OPUS, 22050),
        (AudioFormat.MULAW, 16000),
        (AudioFormat.WAV, 96000),
        (AudioFormat.AAC, 20000),
        (AudioFormat.VOICE_NOTE, 48000),
    ],
)
def test_encode_refuses_rates_the_format_cannot_carry(fmt: AudioFormat, out_rate: int) -> None:
    with pytest.raises(UnsupportedFormat, match=f"{fmt.value} does not support {out_rate} Hz"):
        encode(sine_sweep(0.1, 24000), in_rate=24000, fmt=fmt, out_rate=out_rate)


def test_missing_ffprobe_fails_the_test_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tests.audio_probe.shutil.which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="ffprobe not found: apt-get install ffmpeg"):
        ffprobe_json(b"RIFF", "wav")
