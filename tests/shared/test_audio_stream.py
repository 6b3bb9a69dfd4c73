"""Chunked resampling and streaming encoders: joined chunks must equal a whole-file encoding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shared.audio.encode import encode, open_stream_encoder
from shared.audio.formats import FORMAT_SPECS, AudioFormat
from shared.audio.resample import StreamResampler, resample
from shared.engines.base import Pcm
from shared.errors import InternalError, UnsupportedFormat
from tests.audio_probe import (
    audio_stream,
    correlation,
    ffmpeg_decode,
    ffprobe_json,
    probe_duration_s,
    sine_sweep,
)

SIGNAL_S = 4.0  # long enough for MP3's frame padding to stay within 5 % (see test_audio_formats)
DURATION_TOLERANCE = 0.05
RAW_INPUT = {
    AudioFormat.PCM16: lambda rate: ("-f", "s16le", "-ar", str(rate), "-ac", "1"),
    AudioFormat.MULAW: lambda rate: ("-f", "mulaw", "-ar", str(rate), "-ac", "1"),
}


def irregular_chunks(pcm: Pcm, seed: int = 7) -> Iterator[Pcm]:
    """Engine-like chunking: sizes from 0 (an empty yield) to ~0.2 s, never aligned to frames."""
    rng = np.random.default_rng(seed)
    start = 0
    while start < pcm.size:
        size = int(rng.choice([0, 1, 37, 441, 1000, 2399, 4801]))
        yield pcm[start : start + size]
        start += size


def stream_encode(pcm: Pcm, fmt: AudioFormat, in_rate: int, out_rate: int) -> tuple[bytes, int]:
    """Joined stream output, and how many of its bytes arrived before ``close()``."""
    encoder = open_stream_encoder(fmt, in_rate=in_rate, out_rate=out_rate)
    parts = [encoder.feed(chunk) for chunk in irregular_chunks(pcm)]
    early = sum(len(p) for p in parts)
    return b"".join(parts) + encoder.close(), early


def decode(data: bytes, fmt: AudioFormat, rate: int) -> np.ndarray:
    if fmt in RAW_INPUT:
        return ffmpeg_decode(data, FORMAT_SPECS[fmt].extension, input_args=RAW_INPUT[fmt](rate))
    # rate: Opus always decodes at 48 kHz unless asked; the others already are at ``rate``.
    return ffmpeg_decode(data, FORMAT_SPECS[fmt].extension, rate=rate)


# --- StreamResampler -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"), [(24000, 8000), (22050, 24000), (22050, 48000), (24000, 44100), (24000, 24000)]
)
def test_chunked_resampling_matches_whole_signal_resampling(src: int, dst: int) -> None:
    source = sine_sweep(SIGNAL_S, src)
    resampler = StreamResampler(src, dst)
    chunked = np.concatenate([*map(resampler.feed, irregular_chunks(source)), resampler.flush()])
    whole = resample(source, src, dst)

    assert chunked.dtype == np.float32
    assert abs(chunked.size - whole.size) <= 4
    n = min(chunked.size, whole.size)
    # Same filter state across joins: no clicks, so the two agree far below one PCM16 LSB.
    np.testing.assert_allclose(chunked[:n], whole[:n], atol=1e-5)


def test_resample_identity_returns_the_same_samples() -> None:
    source = sine_sweep(0.5, 24000)
    np.testing.assert_array_equal(resample(source, 24000, 24000), source)


# --- which formats stream --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_streamable_flag_matches_what_open_stream_encoder_accepts(fmt: AudioFormat) -> None:
    rate = FORMAT_SPECS[fmt].fixed_rate or 24000
    if FORMAT_SPECS[fmt].streamable:
        encoder = open_stream_encoder(fmt, in_rate=24000, out_rate=rate)
        assert len(encoder.feed(sine_sweep(0.1, 24000)) + encoder.close()) > 0
    else:
        with pytest.raises(UnsupportedFormat, match="use url or base64 delivery"):
            open_stream_encoder(fmt, in_rate=24000, out_rate=rate)


def test_flac_is_not_streamable() -> None:
    assert not FORMAT_SPECS[AudioFormat.FLAC].streamable


def test_stream_encoder_refuses_rates_the_format_cannot_carry() -> None:
    with pytest.raises(UnsupportedFormat, match="ogg_opus does not support 22050 Hz"):
        open_stream_encoder(AudioFormat.OGG_OPUS, in_rate=24000, out_rate=22050)


def test_feeding_a_closed_stream_encoder_is_an_internal_error() -> None:
    encoder = open_stream_encoder(AudioFormat.WAV, in_rate=24000, out_rate=24000)
    encoder.close()
    with pytest.raises(InternalError, match="after close"):
        encoder.feed(sine_sweep(0.1, 24000))


# --- streamed output equals whole-file output ------------------------------------------------


STREAM_CASES = [
    (AudioFormat.WAV, 24000, 24000),
    (AudioFormat.WAV, 22050, 16000),
    (AudioFormat.MP3, 24000, 24000),
    (AudioFormat.MP3, 22050, 8000),
    (AudioFormat.OGG_OPUS, 24000, 24000),
    (AudioFormat.OGG_OPUS, 22050, 48000),
    (AudioFormat.OGG_OPUS, 24000, 16000),
    (AudioFormat.VOICE_NOTE, 22050, 24000),
    (AudioFormat.PCM16, 22050, 24000),
    (AudioFormat.MULAW, 24000, 8000),
    (AudioFormat.MULAW, 22050, 8000),
]


@pytest.mark.parametrize(("fmt", "in_rate", "out_rate"), STREAM_CASES)
def test_streamed_chunks_decode_like_the_whole_file_encoding(
    fmt: AudioFormat, in_rate: int, out_rate: int
) -> None:
    source = sine_sweep(SIGNAL_S, in_rate)
    streamed, _ = stream_encode(source, fmt, in_rate, out_rate)
    whole = encode(source, in_rate=in_rate, fmt=fmt, out_rate=out_rate)

    streamed_pcm = decode(streamed, fmt, out_rate)
    whole_pcm = decode(whole, fmt, out_rate)
    assert streamed_pcm.size / out_rate == pytest.approx(SIGNAL_S, rel=DURATION_TOLERANCE)
    assert abs(streamed_pcm.size - whole_pcm.size) <= 4
    assert correlation(streamed_pcm, whole_pcm) > 0.99


@pytest.mark.parametrize(
    ("fmt", "in_rate", "out_rate"),
    [c for c in STREAM_CASES if c[0] in (AudioFormat.WAV, AudioFormat.PCM16, AudioFormat.MULAW)],
)
def test_uncompressed_streams_equal_the_whole_file_samples(
    fmt: AudioFormat, in_rate: int, out_rate: int
) -> None:
    source = sine_sweep(SIGNAL_S, in_rate)
    streamed, _ = stream_encode(source, fmt, in_rate, out_rate)
    whole = encode(source, in_rate=in_rate, fmt=fmt, out_rate=out_rate)
    streamed_pcm = decode(streamed, fmt, out_rate)
    whole_pcm = decode(whole, fmt, out_rate)
    n = min(streamed_pcm.size, whole_pcm.size)
    # One LSB of slack for float rounding in the stateful resampler.
    assert np.abs(streamed_pcm[:n].astype(int) - whole_pcm[:n]).max() <= 1


@pytest.mark.parametrize(
    ("fmt", "in_rate", "out_rate"),
    [(AudioFormat.WAV, 22050, 24000), (AudioFormat.MP3, 24000, 24000)]
    + [(AudioFormat.OGG_OPUS, 22050, rate) for rate in (8000, 16000, 24000, 48000)]
    + [(AudioFormat.VOICE_NOTE, 22050, 24000)],
)
def test_streamed_container_probes_as_mono_with_the_right_duration(
    fmt: AudioFormat, in_rate: int, out_rate: int
) -> None:
    streamed, _ = stream_encode(sine_sweep(SIGNAL_S, in_rate), fmt, in_rate, out_rate)
    probe = ffprobe_json(streamed, FORMAT_SPECS[fmt].extension)
    stream = audio_stream(probe)
    assert stream["channels"] == 1
    codec = {"wav": "pcm_s16le", "mp3": "mp3", "ogg_opus": "opus", "voice_note": "opus"}[fmt]
    assert stream["codec_name"] == codec
    if codec != "opus":  # Opus always reports its 48 kHz decoder rate
        assert int(stream["sample_rate"]) == out_rate
    assert probe_duration_s(probe) == pytest.approx(SIGNAL_S, rel=DURATION_TOLERANCE)


# --- streaming behaviour ---------------------------------------------------------------------


def test_wav_stream_sends_its_header_with_the_first_chunk_even_if_empty() -> None:
    encoder = open_stream_encoder(AudioFormat.WAV, in_rate=24000, out_rate=24000)
    first = encoder.feed(np.zeros(0, dtype=np.float32))
    assert first[:4] == b"RIFF"
    assert first[8:16] == b"WAVEfmt "
    # Unknown length: both size fields are 0xFFFFFFFF, which ffmpeg reads as "until EOF".
    assert first[4:8] == b"\xff\xff\xff\xff"
    assert first[40:44] == b"\xff\xff\xff\xff"
    assert encoder.feed(np.zeros(10, dtype=np.float32))[:4] != b"RIFF"


def test_ogg_opus_stream_emits_audio_pages_within_half_a_second() -> None:
    encoder = open_stream_encoder(AudioFormat.OGG_OPUS, in_rate=24000, out_rate=24000)
    source = sine_sweep(0.5, 24000)
    out = b"".join(encoder.feed(source[i : i + 1200]) for i in range(0, source.size, 1200))
    # Two header pages (OpusHead, OpusTags), then audio pages every ~200 ms rather than
    # FFmpeg's default of one page per second.
    assert out.count(b"OggS") >= 3


@pytest.mark.parametrize(
    "fmt",
    [
        AudioFormat.WAV,
        AudioFormat.MP3,
        AudioFormat.OGG_OPUS,
        AudioFormat.MULAW,
        AudioFormat.VOICE_NOTE,
    ],
)
def test_streams_deliver_most_bytes_before_close(fmt: AudioFormat) -> None:
    out_rate = FORMAT_SPECS[fmt].fixed_rate or 24000
    streamed, early = stream_encode(sine_sweep(SIGNAL_S, 24000), fmt, 24000, out_rate)
    assert early / len(streamed) > 0.9


@pytest.mark.parametrize(
    "fmt", [AudioFormat.WAV, AudioFormat.MP3, AudioFormat.OGG_OPUS, AudioFormat.VOICE_NOTE]
)
def test_stream_closed_without_audio_is_still_a_valid_file(fmt: AudioFormat) -> None:
    data = open_stream_encoder(fmt, in_rate=24000, out_rate=24000).close()
    assert audio_stream(ffprobe_json(data, FORMAT_SPECS[fmt].extension))["channels"] == 1
