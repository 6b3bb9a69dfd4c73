"""Reference audio for cloned voices: real files from real encoders, really decoded and checked."""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from shared.audio.encode import WAV_HEADER_BYTES, encode, float_to_int16, wav_header
from shared.audio.formats import AudioFormat
from shared.audio.resample import resample
from shared.engines.base import Engine
from shared.errors import ErrorCode, ReferenceTooLong, TTSError
from shared.voices.reference import (
    CLIP_LEVEL,
    MAX_CLIPPED_FRACTION,
    MAX_DURATION_S,
    MAX_REFERENCE_BYTES,
    ReferenceAudio,
    clipped_fraction,
    decode_reference,
)
from tests.audio_probe import correlation, ffprobe_json, probe_duration_s

Signal = npt.NDArray[np.float32]

SOURCE_RATE = 24000  # every encoder under test takes it (opus included)
XTTS_RATE = 22050  # XTTS reads references at 22,050 Hz ...
SPEAKER_ENCODER_RATE = 16000  # ... and its speaker encoder at 16 kHz

# Decoded length vs the source: wav, flac and ogg are sample-exact. lameenc writes no LAME tag, so
# the decoder cannot trim LAME's 1105-sample delay nor the padding of the last frame (576 samples
# at 24 kHz): 64 ms here, within two MPEG-1-sized (1152-sample) frames.
DURATION_TOLERANCE_S = {"wav": 1e-6, "flac": 1e-6, "ogg": 1e-3, "mp3": 2 * 1152 / SOURCE_RATE}
# The format a job-style name stands for, and what the decoder reports.
CONTAINER = {"wav": "wav", "mp3": "mp3", "ogg_opus": "ogg", "flac": "flac", "ogg_vorbis": "ogg"}
CODEC = {
    "wav": "pcm_s16le",
    "mp3": "mp3",
    "ogg_opus": "opus",
    "flac": "flac",
    "ogg_vorbis": "vorbis",
}
FORMATS = ["wav", "mp3", "ogg_opus", "flac"]


def voiced(seconds: float, rate: int = SOURCE_RATE, *, peak: float = 0.5) -> Signal:
    """Voiced-speech-like test audio: a 150 Hz harmonic series with vibrato, in syllables with
    gaps (2.5 per second), scaled so its loudest sample is ``peak``."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(150 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 16))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.7
    signal = tone * envelope
    return (peak * signal / np.max(np.abs(signal))).astype(np.float32)


def encoded(pcm: Signal, fmt: str, rate: int = SOURCE_RATE) -> bytes:
    """``pcm`` as a file: the service's own encoders, and libsndfile for ogg/vorbis."""
    if fmt == "ogg_vorbis":
        buffer = io.BytesIO()
        sf.write(buffer, pcm, rate, format="OGG", subtype="VORBIS")
        return buffer.getvalue()
    return encode(pcm, in_rate=rate, fmt=AudioFormat(fmt), out_rate=rate)


def soundfile_wav(pcm: npt.NDArray[np.float32], rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def code_of(data: bytes, target_rate: int = XTTS_RATE) -> ErrorCode:
    with pytest.raises(TTSError) as caught:
        decode_reference(data, target_rate=target_rate)
    return caught.value.code


def rms_dbfs(pcm: npt.ArrayLike) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(np.asarray(pcm, dtype=np.float64))))))


# --- what is accepted ------------------------------------------------------------------------


@pytest.mark.parametrize("target_rate", [XTTS_RATE, SPEAKER_ENCODER_RATE])
@pytest.mark.parametrize("fmt", [*FORMATS, "ogg_vorbis"])
def test_each_format_decodes_to_mono_at_the_target_rate_with_its_duration(
    fmt: str, target_rate: int
) -> None:
    source = voiced(5.0)
    ref = decode_reference(encoded(source, fmt), target_rate=target_rate)

    assert (ref.container, ref.codec) == (CONTAINER[fmt], CODEC[fmt])
    assert ref.sample_rate == target_rate
    assert ref.pcm.dtype == np.float32 and ref.pcm.ndim == 1
    assert ref.duration_s == pytest.approx(5.0, abs=DURATION_TOLERANCE_S[ref.container])
    assert abs(ref.pcm.size - ref.duration_s * target_rate) <= 1
    assert ref.source_rate == (48000 if fmt == "ogg_opus" else SOURCE_RATE)  # opus decodes at 48k
    assert ref.rms_dbfs == pytest.approx(rms_dbfs(source), abs=1.0)  # mp3 loses ~0.5 dB
    assert ref.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=1.0)
    assert ref.clipped_fraction == 0.0
    if fmt in ("wav", "flac"):  # lossless: the very samples, resampled
        assert correlation(ref.pcm, resample(source, SOURCE_RATE, target_rate)) > 0.9999


def test_stereo_44k_wav_is_the_average_of_its_channels() -> None:
    left = voiced(5.0, 44100)
    right = 0.5 * np.roll(left, 1234)  # a different signal, so picking one channel would show
    data = soundfile_wav(np.stack([left, right], axis=1), 44100)

    ref = decode_reference(data, target_rate=XTTS_RATE)

    assert (ref.source_channels, ref.source_rate, ref.sample_rate) == (2, 44100, XTTS_RATE)
    expected = resample(((left + right) / 2).astype(np.float32), 44100, XTTS_RATE)
    assert ref.pcm.size == expected.size
    assert np.max(np.abs(ref.pcm - expected)) < 1e-3  # 16-bit rounding
    assert correlation(ref.pcm, resample(left, 44100, XTTS_RATE)) < 0.99


def test_phase_inverted_stereo_mixes_to_silence_and_is_refused() -> None:
    left = voiced(5.0, 44100)
    assert code_of(soundfile_wav(np.stack([left, -left], axis=1), 44100)) == "reference_silent"


def test_telephone_mulaw_wav_at_8k_is_accepted() -> None:
    ref = decode_reference(soundfile_wav(voiced(5.0, 8000), 8000, "ULAW"), target_rate=XTTS_RATE)
    assert (ref.codec, ref.source_rate, ref.sample_rate) == ("pcm_mulaw", 8000, XTTS_RATE)


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_a_file_behind_an_id3v2_tag_is_accepted(fmt: str) -> None:
    title = b"\x03" + b"Front desk"  # TIT2 frame: UTF-8 text
    frame = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title
    size = len(frame)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    data = b"ID3\x04\x00\x00" + syncsafe + frame + encoded(voiced(5.0), fmt)

    assert decode_reference(data, target_rate=XTTS_RATE).container == fmt


def test_duration_bounds_are_inclusive() -> None:
    for seconds in (3.0, MAX_DURATION_S):
        ref = decode_reference(encoded(voiced(seconds), "wav"), target_rate=XTTS_RATE)
        assert ref.duration_s == seconds


def test_a_quiet_but_usable_recording_is_accepted() -> None:
    ref = decode_reference(encoded(voiced(5.0, peak=0.05), "wav"), target_rate=XTTS_RATE)
    assert -27 < ref.peak_dbfs < -25 and ref.rms_dbfs < -30


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_loud_clean_recording_peaking_at_full_scale_is_accepted(fmt: str) -> None:
    ref = decode_reference(encoded(voiced(5.0, peak=1.0), fmt), target_rate=XTTS_RATE)
    assert ref.peak_dbfs > -1.0
    assert ref.clipped_fraction < MAX_CLIPPED_FRACTION / 5  # a wide margin, opus (~0.1 %) included


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg_opus"])
def test_piper_speech_at_full_scale_is_accepted_and_overdriven_is_refused(
    piper_engine: Engine, fmt: str
) -> None:
    speech = piper_engine.synthesize(
        "Thanks for calling the front desk. We are open from nine until six, Monday to Friday.",
        voice=piper_engine.voice(piper_engine.default_voice),
        language="en",
        speed=1.0,
    )
    rate = piper_engine.sample_rate
    full_scale = (speech / np.max(np.abs(speech))).astype(np.float32)
    out_rate = 24000 if fmt == "ogg_opus" else rate  # opus cannot run at 22,050 Hz

    def as_file(pcm: Signal) -> bytes:
        return encode(pcm, in_rate=rate, fmt=AudioFormat(fmt), out_rate=out_rate)

    ref = decode_reference(as_file(full_scale), target_rate=XTTS_RATE)
    assert ref.clipped_fraction < MAX_CLIPPED_FRACTION / 5  # a wide margin, opus (~0.1 %) included
    overdriven = np.clip(4 * full_scale, -1, 1)  # 12 dB too hot
    assert code_of(as_file(overdriven)) == "reference_clipped"


def test_returned_pcm_is_read_only() -> None:
    ref = decode_reference(encoded(voiced(4.0), "flac"), target_rate=XTTS_RATE)
    assert isinstance(ref, ReferenceAudio)
    with pytest.raises(ValueError):
        ref.pcm[0] = 1.0


# --- size and duration -----------------------------------------------------------------------


def _limit_sized_wav() -> bytes:
    """A valid 16-bit wav of exactly MAX_REFERENCE_BYTES (~104 s at 48 kHz: too long to use)."""
    data_bytes = MAX_REFERENCE_BYTES - WAV_HEADER_BYTES
    samples = float_to_int16(np.resize(voiced(2.0, 48000), data_bytes // 2))
    return wav_header(48000, data_bytes) + samples.astype("<i2").tobytes()


def test_size_is_checked_before_any_decoding() -> None:
    at_limit = _limit_sized_wav()
    assert len(at_limit) == MAX_REFERENCE_BYTES
    # At the limit the bytes are decoded (and found too long); one byte more, they never are:
    assert code_of(at_limit) == "reference_too_long"
    assert code_of(at_limit + b"\x00") == "reference_too_large"
    # Zeros would be unreadable if anything looked at them.
    assert code_of(bytes(MAX_REFERENCE_BYTES + 1)) == "reference_too_large"
    assert code_of(bytes(MAX_REFERENCE_BYTES)) == "reference_unreadable"


def test_too_large_message_says_what_to_send() -> None:
    with pytest.raises(TTSError) as caught:
        decode_reference(bytes(12_300_000), target_rate=XTTS_RATE)
    assert "12.3 MB" in caught.value.message and "10 MB" in caught.value.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_seconds_is_too_short(fmt: str) -> None:
    assert code_of(encoded(voiced(2.0), fmt)) == "reference_too_short"


def test_thirty_one_seconds_is_too_long_and_decoding_stops_just_past_thirty() -> None:
    with pytest.raises(ReferenceTooLong) as caught:
        decode_reference(encoded(voiced(31.0), "wav"), target_rate=XTTS_RATE)
    assert caught.value.code == "reference_too_long"
    assert MAX_DURATION_S < caught.value.decoded_s < MAX_DURATION_S + 0.2


def test_a_ten_minute_low_bitrate_mp3_is_refused_after_decoding_only_thirty_seconds() -> None:
    # MPEG frames stand alone, so 60 copies of a 10 s mp3 are one 10-minute mp3 (32 kbps at 8 kHz).
    data = encoded(voiced(10.0, 8000), "mp3", rate=8000) * 60
    assert len(data) < MAX_REFERENCE_BYTES
    # Each copy also carries LAME's delay and last-frame padding: ~10.15 s.
    assert 600 <= probe_duration_s(ffprobe_json(data, "mp3")) < 612

    with pytest.raises(ReferenceTooLong) as caught:
        decode_reference(data, target_rate=XTTS_RATE)
    assert MAX_DURATION_S < caught.value.decoded_s < MAX_DURATION_S + 0.2


# --- not audio, or not usable audio ----------------------------------------------------------


NOT_AUDIO = {
    "empty": b"",
    "random": np.random.default_rng(9).integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(2000),
    "text": b"Please clone my voice. " * 200,
    # A playlist FFmpeg's HLS reader would follow if it were let near the bytes.
    "hls": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://169.254.169.254/a.mp3\n",
    "riff_not_wave": b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(2000),
    "ogg_magic_only": b"OggS" + bytes(2000),
    "flac_magic_only": b"fLaC" + bytes(2000),
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_bytes_that_are_not_audio_are_unreadable(name: str) -> None:
    assert code_of(NOT_AUDIO[name]) == "reference_unreadable"


def test_an_ogg_holding_only_video_is_unreadable() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as box:
        video = box.add_stream("libvpx", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            picture = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            picture.pts = index
            box.mux(video.encode(picture))
        box.mux(video.encode(None))

    with pytest.raises(TTSError) as caught:
        decode_reference(buffer.getvalue(), target_rate=XTTS_RATE)
    assert caught.value.code == "reference_unreadable"
    assert "no audio stream" in caught.value.message


def _damaged(data: bytes, *, at: float = 0.5, length: int = 600) -> bytes:
    start = int(len(data) * at)
    noise = np.random.default_rng(3).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + length :]


UNUSABLE = {
    "wav_without_samples": lambda: soundfile_wav(np.zeros(0, dtype=np.float32), SOURCE_RATE),
    "wav_ms_adpcm": lambda: soundfile_wav(voiced(5.0), SOURCE_RATE, "MS_ADPCM"),
    "wav_three_channels": lambda: soundfile_wav(np.stack([voiced(5.0)] * 3, axis=1), SOURCE_RATE),
    "wav_at_4khz": lambda: soundfile_wav(voiced(5.0, 4000), 4000),
    "wav_float_nan": lambda: soundfile_wav(
        np.where(np.arange(5 * SOURCE_RATE) == 100, np.nan, voiced(5.0)), SOURCE_RATE, "FLOAT"
    ),
    "mp3_damaged_mid_file": lambda: _damaged(encoded(voiced(8.0), "mp3")),
    "flac_damaged_mid_file": lambda: _damaged(encoded(voiced(8.0), "flac")),
    "flac_cut_short": lambda: encoded(voiced(8.0), "flac")[:-5000],
    "opus_damaged_mid_file": lambda: _damaged(encoded(voiced(8.0), "ogg_opus")),
    "vorbis_damaged_mid_file": lambda: _damaged(encoded(voiced(8.0), "ogg_vorbis")),
}


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_audio_that_cannot_be_used_as_sent_is_unreadable(name: str) -> None:
    assert code_of(UNUSABLE[name]()) == "reference_unreadable"


@pytest.mark.parametrize("fmt", ["wav", "ogg_opus"])
@pytest.mark.parametrize("kind", ["digital_silence", "noise_at_-70_dbfs"])
def test_silence_is_refused(kind: str, fmt: str) -> None:
    if kind == "digital_silence":
        pcm = np.zeros(5 * SOURCE_RATE, dtype=np.float32)
    else:
        noise = np.random.default_rng(7).standard_normal(5 * SOURCE_RATE)
        pcm = (10 ** (-70 / 20) * noise).astype(np.float32)
    assert code_of(encoded(pcm, fmt)) == "reference_silent"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_tone_driven_into_hard_clipping_is_refused(fmt: str) -> None:
    clipped = np.clip(voiced(5.0, peak=4.0), -1.0, 1.0)
    with pytest.raises(TTSError) as caught:
        decode_reference(encoded(clipped, fmt), target_rate=XTTS_RATE)
    assert caught.value.code == "reference_clipped"
    assert "input level lower" in caught.value.message


def test_clipped_fraction_counts_runs_of_three_per_channel() -> None:
    samples = np.zeros((2, 100), dtype=np.float32)
    samples[0, 10:12] = 1.0  # a run of two: a clean peak
    samples[0, 20:23] = -CLIP_LEVEL  # three at the level, negative
    samples[0, 98:] = 1.0  # two at the end of channel 0 ...
    samples[1, :1] = 1.0  # ... and one at the start of channel 1: never one run
    assert clipped_fraction(samples) == 3 / 200


def test_refusals_never_echo_what_was_sent() -> None:
    marker = b"tenant-secret-7f3a"
    refusals = [
        marker * 100,
        b"RIFF\x24\x00\x00\x00WAVE" + marker * 100,
        b"OggS" + marker * 100,
        bytes(MAX_REFERENCE_BYTES) + marker,
    ]
    for data in refusals:
        with pytest.raises(TTSError) as caught:
            decode_reference(data, target_rate=XTTS_RATE)
        assert marker.decode() not in str(caught.value)
