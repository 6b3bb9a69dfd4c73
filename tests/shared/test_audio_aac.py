"""AAC in ADTS (FFmpeg's encoder via PyAV): rates, whole files and streams, as ffmpeg reads them."""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
import pytest

from shared.audio.aac import AdtsEncoder
from shared.audio.encode import encode, open_stream_encoder
from shared.audio.formats import (
    AAC_RATES,
    FORMAT_SPECS,
    MAX_RATE,
    MIN_RATE,
    SUPPORTED_SAMPLE_RATES,
    AudioFormat,
    resolve_sample_rate,
)
from shared.engines.base import Pcm
from shared.errors import InternalError, UnsupportedFormat
from tests import audio_probe

AAC = AudioFormat.AAC
SIGNAL_S = 4.0
FRAME = 1024  # samples per AAC-LC frame
PRIMING = 1024  # FFmpeg's aac encoder delay, which ADTS cannot signal to the decoder
# MPEG-4 sampling_frequency_index (ISO/IEC 14496-3 table 1.18), as written in each ADTS header.
FREQUENCY_INDEX = {48000: 3, 44100: 4, 32000: 5, 24000: 6, 22050: 7, 16000: 8, 12000: 9}
FREQUENCY_INDEX |= {11025: 10, 8000: 11}
CONTRACT_RATES = sorted(SUPPORTED_SAMPLE_RATES)


def odd_chunks(pcm: Pcm) -> Iterator[Pcm]:
    """Engine-like chunk sizes, none a multiple of the 1024-sample frame, with empty yields."""
    sizes = [0, 1, 37, 441, 1000, 1023, 1025, 2399, 4801]
    start, turn = 0, 0
    while start < pcm.size:
        size = sizes[turn % len(sizes)]
        yield pcm[start : start + size]
        start += size
        turn += 1


def stream_parts(pcm: Pcm, in_rate: int, out_rate: int) -> tuple[list[bytes], bytes]:
    """Each ``feed`` result in order, and the ``close`` result."""
    encoder = open_stream_encoder(AAC, in_rate=in_rate, out_rate=out_rate)
    return [encoder.feed(chunk) for chunk in odd_chunks(pcm)], encoder.close()


def adts_frames(data: bytes) -> list[dict[str, int]]:
    """Walk the ADTS headers from the first byte to the last; fail on any gap or bad sync."""
    frames = []
    at = 0
    while at < len(data):
        header = data[at : at + 7]
        assert len(header) == 7, f"truncated ADTS header at byte {at}"
        assert header[0] == 0xFF and header[1] & 0xF6 == 0xF0, f"no ADTS sync at byte {at}"
        length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
        assert length > 7, f"empty ADTS frame at byte {at}"
        frames.append(
            {
                "profile": header[2] >> 6,  # object type - 1: 1 is AAC-LC
                "frequency_index": (header[2] >> 2) & 0x0F,
                "channels": ((header[2] & 0x01) << 2) | (header[3] >> 6),
                "length": length,
            }
        )
        at += length
    assert at == len(data), "the last ADTS frame runs past the end of the data"
    return frames


def decoded_s(data: bytes, rate: int) -> float:
    return audio_probe.ffmpeg_decode(data, "aac").size / rate


def assert_aac_duration(data: bytes, rate: int, seconds: float) -> None:
    # Decoded length is exact: the priming delay plus the input padded to a whole frame.
    assert seconds + PRIMING / rate <= decoded_s(data, rate) <= seconds + (PRIMING + FRAME) / rate
    # ffprobe only estimates an ADTS file's duration from its first frames' bitrate (measured up
    # to 6 % off for a sweep), so it gets a looser bound; a wrong rate would be off by 2x or more.
    assert audio_probe.probe_duration_s(audio_probe.ffprobe_json(data, "aac")) == pytest.approx(
        seconds, rel=0.1
    )


# --- rates -----------------------------------------------------------------------------------


def test_aac_rates_are_the_rates_ffmpegs_encoder_offers_within_8k_to_48k() -> None:
    offered = av.codec.Codec("aac", "w").audio_rates
    assert {rate for rate in offered if MIN_RATE <= rate <= MAX_RATE} == AAC_RATES
    assert SUPPORTED_SAMPLE_RATES <= AAC_RATES


@pytest.mark.parametrize("native", [22050, 24000])
def test_aac_default_rate_is_the_engines_own(native: int) -> None:
    assert resolve_sample_rate(AAC, None, native) == native


def test_aac_spec_is_streamable_adts_as_audio_aac() -> None:
    spec = FORMAT_SPECS[AAC]
    assert (spec.content_type, spec.extension, spec.streamable) == ("audio/aac", "aac", True)


@pytest.mark.parametrize("rate", [20000, 44000, 96000])
def test_rates_the_encoder_refuses_are_unsupported_naming_the_valid_ones(rate: int) -> None:
    valid = "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000 Hz"
    message = f"aac does not support {rate} Hz; use one of {valid}"
    with pytest.raises(UnsupportedFormat, match=message):
        encode(audio_probe.sine_sweep(0.1, 24000), in_rate=24000, fmt=AAC, out_rate=rate)
    with pytest.raises(UnsupportedFormat, match=message):
        open_stream_encoder(AAC, in_rate=24000, out_rate=rate)


def test_an_ffmpeg_failure_becomes_an_internal_error() -> None:
    # Past the rate check (a bug upstream): FFmpeg refuses to open the codec at 20 kHz.
    encoder = AdtsEncoder(20000)
    with pytest.raises(InternalError, match="aac encoding failed") as caught:
        encoder.encode(audio_probe.sine_sweep(0.1, 20000))
    assert isinstance(caught.value.__cause__, av.FFmpegError)


# --- whole files -----------------------------------------------------------------------------


@pytest.mark.parametrize("out_rate", CONTRACT_RATES)
def test_whole_file_probes_as_mono_aac_lc_at_the_rate_and_duration(out_rate: int) -> None:
    data = encode(
        audio_probe.sine_sweep(SIGNAL_S, 24000), in_rate=24000, fmt=AAC, out_rate=out_rate
    )

    probe = audio_probe.ffprobe_json(data, "aac")
    stream = audio_probe.audio_stream(probe)
    assert probe["format"]["format_name"] == "aac"  # ffmpeg's raw ADTS demuxer
    assert (stream["codec_name"], stream["profile"]) == ("aac", "LC")
    assert int(stream["sample_rate"]) == out_rate
    assert stream["channels"] == 1
    assert_aac_duration(data, out_rate, SIGNAL_S)


@pytest.mark.parametrize("out_rate", CONTRACT_RATES)
def test_every_adts_header_says_lc_mono_at_the_rate_and_they_chain_to_the_end(
    out_rate: int,
) -> None:
    data = encode(audio_probe.sine_sweep(1.0, 22050), in_rate=22050, fmt=AAC, out_rate=out_rate)
    frames = adts_frames(data)
    assert {(f["profile"], f["frequency_index"], f["channels"]) for f in frames} == {
        (1, FREQUENCY_INDEX[out_rate], 1)
    }
    # One frame per 1024 samples of input, plus the priming frame and the partial last one.
    assert len(frames) == pytest.approx(out_rate / FRAME + 2, abs=1)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 24000), (22050, 8000), (24000, 48000)])
def test_whole_file_decodes_to_the_source_after_the_priming_delay(
    in_rate: int, out_rate: int
) -> None:
    source = audio_probe.sine_sweep(SIGNAL_S, in_rate)
    data = encode(source, in_rate=in_rate, fmt=AAC, out_rate=out_rate)
    # Decode at the source's rate so decoded and source samples line up one to one.
    decoded = audio_probe.ffmpeg_decode(data, "aac", rate=in_rate)

    window = source[:in_rate]
    lags = range(0, 3 * FRAME)
    best = max(lags, key=lambda lag: audio_probe.correlation(decoded[lag : lag + in_rate], window))
    assert best == pytest.approx(PRIMING * in_rate / out_rate, abs=3)
    assert audio_probe.correlation(decoded[best:], source) > 0.95
    # Not just the right shape: the level survives too (the sweep's RMS is 0.5 / sqrt 2).
    rms = np.sqrt(np.mean((decoded[best : best + source.size] / 32767.0) ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_empty_input_is_a_valid_file_of_one_frame_of_silence() -> None:
    data = encode(np.zeros(0, dtype=np.float32), in_rate=24000, fmt=AAC, out_rate=24000)
    stream = audio_probe.audio_stream(audio_probe.ffprobe_json(data, "aac"))
    assert (stream["codec_name"], stream["channels"], int(stream["sample_rate"])) == (
        "aac",
        1,
        24000,
    )
    assert not audio_probe.ffmpeg_decode(data, "aac").any()


def test_non_finite_samples_are_cleaned_before_the_codec_which_refuses_them() -> None:
    diverged = audio_probe.sine_sweep(1.0, 24000)
    diverged[100:200] = np.nan
    diverged[300] = np.inf
    # FFmpeg's aac encoder rejects NaN/inf input outright ...
    raw = AdtsEncoder(24000)
    with pytest.raises(InternalError, match="aac encoding failed"):
        raw.encode(diverged)
    # ... so encode() must clean it first: NaN becomes silence, the rest plays as before.
    data = encode(diverged, in_rate=24000, fmt=AAC, out_rate=24000)
    decoded = audio_probe.ffmpeg_decode(data, "aac")[PRIMING:]
    assert audio_probe.correlation(decoded[1000:], diverged[1000:]) > 0.95


# --- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 24000), (22050, 16000), (22050, 44100)])
def test_odd_sized_chunks_join_into_one_valid_adts_file(in_rate: int, out_rate: int) -> None:
    parts, tail = stream_parts(audio_probe.sine_sweep(SIGNAL_S, in_rate), in_rate, out_rate)
    streamed = b"".join(parts) + tail

    stream = audio_probe.audio_stream(audio_probe.ffprobe_json(streamed, "aac"))
    assert (stream["codec_name"], stream["channels"]) == ("aac", 1)
    assert int(stream["sample_rate"]) == out_rate
    adts_frames(streamed)
    assert_aac_duration(streamed, out_rate, SIGNAL_S)


def test_stream_without_resampling_is_byte_identical_to_the_whole_file() -> None:
    # The partial frame kept between feeds must be exactly the samples a single call would see.
    source = audio_probe.sine_sweep(SIGNAL_S, 24000)
    parts, tail = stream_parts(source, 24000, 24000)
    assert b"".join(parts) + tail == encode(source, in_rate=24000, fmt=AAC, out_rate=24000)


def test_resampled_stream_decodes_like_the_whole_file() -> None:
    source = audio_probe.sine_sweep(SIGNAL_S, 22050)
    parts, tail = stream_parts(source, 22050, 24000)
    streamed = audio_probe.ffmpeg_decode(b"".join(parts) + tail, "aac")
    whole = audio_probe.ffmpeg_decode(encode(source, in_rate=22050, fmt=AAC, out_rate=24000), "aac")
    assert streamed.size == whole.size
    assert audio_probe.correlation(streamed, whole) > 0.99


def test_stream_hands_out_frames_before_close_and_each_prefix_plays() -> None:
    parts, tail = stream_parts(audio_probe.sine_sweep(SIGNAL_S, 24000), 24000, 24000)
    early = b"".join(parts)

    assert len(early) / (len(early) + len(tail)) > 0.9
    # Bytes arrive long before the end: within the first quarter of the input's chunks.
    first = next(i for i, part in enumerate(parts) if part)
    assert first < len(parts) / 4
    # Each feed ends on a frame boundary, so what a client has so far is already a playable file.
    prefix = b"".join(parts[: len(parts) // 2])
    assert adts_frames(prefix)
    assert audio_probe.audio_stream(audio_probe.ffprobe_json(prefix, "aac"))["codec_name"] == "aac"
    assert 0.0 < decoded_s(prefix, 24000) < SIGNAL_S


def test_stream_closed_without_audio_is_still_a_valid_file() -> None:
    encoder = open_stream_encoder(AAC, in_rate=22050, out_rate=24000)
    assert encoder.feed(np.zeros(0, dtype=np.float32)) == b""
    data = encoder.close()
    assert audio_probe.audio_stream(audio_probe.ffprobe_json(data, "aac"))["channels"] == 1
    assert adts_frames(data)


def test_feeding_a_closed_aac_stream_is_an_internal_error() -> None:
    encoder = open_stream_encoder(AAC, in_rate=24000, out_rate=24000)
    encoder.close()
    with pytest.raises(InternalError, match="aac stream encoder used after close"):
        encoder.feed(audio_probe.sine_sweep(0.1, 24000))
