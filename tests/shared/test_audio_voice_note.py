"""The voice_note preset (WhatsApp voice notes): Ogg/Opus mono from libopus via PyAV, sized to
stay under WhatsApp's 512 KB for a minute of speech; whole files, streams, and real worker jobs,
as ffprobe/ffmpeg read them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from itertools import accumulate
from urllib.parse import urlsplit

import av
import numpy as np
import pytest

from serverless_tts.runpod_shapes import run_job
from shared.audio.encode import encode, open_stream_encoder
from shared.audio.formats import (
    FORMAT_SPECS,
    OPUS_RATES,
    VOICE_NOTE_RATE,
    AudioFormat,
    resolve_sample_rate,
)
from shared.audio.resample import resample
from shared.audio.voice_note import VOICE_NOTE_BITRATE, WHATSAPP_VOICE_NOTE_MAX_BYTES
from shared.engines.base import Engine, Pcm
from shared.errors import ErrorCode, TTSError, UnsupportedFormat
from shared.jobs import JobLimits, SynthesizeJob, parse_job
from shared.worker import WorkerContext
from tests.audio_probe import (
    audio_stream,
    correlation,
    ffmpeg_decode,
    ffprobe_json,
    sine_sweep,
)
from tests.shared.test_audio_opus import assert_mono_opus_in_ogg
from tests.shared.test_audio_stream import irregular_chunks, stream_encode
from tests.shared.test_voice_reference import voiced

NOTE = AudioFormat.VOICE_NOTE
MINUTE_S = 60.0
# Bytes a minute at the target bitrate; real files run ~1-5 % above it (Ogg page headers, VBR).
MINUTE_AT_TARGET = MINUTE_S * VOICE_NOTE_BITRATE / 8
REPLY = (
    "Thanks for your message. Your order shipped this morning and should arrive on Thursday. "
    "If anything looks wrong, reply here and we will sort it out right away."
)


@pytest.fixture(scope="module")
def speech(piper_engine: Engine) -> tuple[Pcm, int]:
    """A few sentences of real Piper speech (~8 s) and its rate."""
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(REPLY, voice=voice, language="en", speed=1.0)
    return pcm, piper_engine.sample_rate


def looped(pcm: Pcm, rate: int, seconds: float) -> Pcm:
    """``pcm`` repeated to ``seconds``: a long reply of real speech without minutes of TTS."""
    samples = round(seconds * rate)
    return np.tile(pcm, -(-samples // pcm.size))[:samples]


def white_noise(seconds: float, rate: int) -> Pcm:
    # The hardest content for a size bound: every band full, nothing predictable.
    rng = np.random.default_rng(3)
    return rng.uniform(-0.9, 0.9, round(seconds * rate)).astype(np.float32)


def job(api_key: str, **fields: object) -> dict[str, object]:
    return {"api_key": api_key, "text": REPLY, "format": "voice_note", **fields}


def assert_voice_note(data: bytes, seconds: float) -> None:
    """What WhatsApp requires of a voice note (Ogg, Opus, mono), at ``seconds`` long."""
    assert_mono_opus_in_ogg(data, VOICE_NOTE_RATE, seconds, slack_s=0.05)


# --- the preset --------------------------------------------------------------------------------


def test_voice_note_is_a_streamable_ogg_file_at_one_opus_rate() -> None:
    spec = FORMAT_SPECS[NOTE]
    assert (spec.content_type, spec.extension, spec.streamable) == ("audio/ogg", "ogg", True)
    assert spec.fixed_rate == VOICE_NOTE_RATE and VOICE_NOTE_RATE in OPUS_RATES
    # libopus, not FFmpeg's experimental native encoder, and it runs at our rate.
    codec = av.codec.Codec("libopus", "w")
    assert codec.name == "libopus" and VOICE_NOTE_RATE in codec.audio_rates


@pytest.mark.parametrize("native", [22050, 24000])
def test_both_engines_rates_become_the_presets_rate(native: int) -> None:
    assert resolve_sample_rate(NOTE, None, native) == VOICE_NOTE_RATE


def test_another_requested_rate_is_refused_naming_the_one_it_takes() -> None:
    with pytest.raises(UnsupportedFormat, match="voice_note does not support 48000 Hz; use only"):
        resolve_sample_rate(NOTE, 48000, 24000)


def test_the_bitrate_leaves_a_minute_well_under_whatsapps_limit() -> None:
    # 60 s x 32 kbps / 8 = 240,000 bytes: under half of 524,288, room for VBR and page headers.
    assert WHATSAPP_VOICE_NOTE_MAX_BYTES == 524_288
    assert MINUTE_AT_TARGET < WHATSAPP_VOICE_NOTE_MAX_BYTES / 2


# --- whole files -------------------------------------------------------------------------------


@pytest.mark.parametrize("in_rate", [22050, 24000])
def test_whole_file_probes_as_mono_opus_in_ogg_as_long_as_its_input(in_rate: int) -> None:
    data = encode(voiced(4.0, in_rate), in_rate=in_rate, fmt=NOTE, out_rate=VOICE_NOTE_RATE)
    assert_voice_note(data, 4.0)


LONG_REPLIES: dict[str, Callable[[tuple[Pcm, int]], tuple[Pcm, int]]] = {
    "piper_speech": lambda speech: (looped(*speech, MINUTE_S), speech[1]),
    "voiced_harmonics": lambda speech: (voiced(MINUTE_S, 22050), 22050),
    "white_noise": lambda speech: (white_noise(MINUTE_S, 24000), 24000),
}


@pytest.mark.parametrize("content", list(LONG_REPLIES))
def test_a_minute_stays_under_512_kb_whole_and_streamed(
    speech: tuple[Pcm, int], content: str
) -> None:
    pcm, rate = LONG_REPLIES[content](speech)
    whole = encode(pcm, in_rate=rate, fmt=NOTE, out_rate=VOICE_NOTE_RATE)
    streamed, _ = stream_encode(pcm, NOTE, rate, VOICE_NOTE_RATE)

    for data in (whole, streamed):
        assert_voice_note(data, MINUTE_S)
        assert len(data) < WHATSAPP_VOICE_NOTE_MAX_BYTES
        # Near the target, not merely under the limit: libopus's own default (64 kbps mono,
        # 480,000 bytes a minute) would pass the limit but not this; constrained VBR holds even
        # for noise.
        assert len(data) < 1.1 * MINUTE_AT_TARGET


def test_decoded_audio_is_as_long_as_the_input_and_lines_up_with_it() -> None:
    source = sine_sweep(4.0, 24000)
    data = encode(source, in_rate=24000, fmt=NOTE, out_rate=VOICE_NOTE_RATE)
    decoded = ffmpeg_decode(data, "ogg", rate=24000)
    # Pre-skip and the last granule position trim the codec's delay and padding exactly.
    assert decoded.size == source.size
    # No lag left, and the shape survives (a speech codec at 32 kbps keeps ~0.94 on a sweep; a
    # misaligned or scrambled decode scores near 0).
    lags = range(-48, 49)
    scores = {lag: correlation(decoded[max(lag, 0) :], source[max(-lag, 0) :]) for lag in lags}
    assert max(scores, key=scores.__getitem__) == 0
    assert scores[0] > 0.9


def test_the_same_audio_always_gives_the_same_bytes() -> None:
    # No random Ogg serial number: a cached note and a fresh one are the same file.
    source = voiced(2.0, 24000)
    first = encode(source, in_rate=24000, fmt=NOTE, out_rate=VOICE_NOTE_RATE)
    assert encode(source, in_rate=24000, fmt=NOTE, out_rate=VOICE_NOTE_RATE) == first


# --- streams -----------------------------------------------------------------------------------


def test_stream_without_resampling_decodes_to_the_whole_files_exact_samples(
    speech: tuple[Pcm, int],
) -> None:
    source = resample(speech[0], speech[1], 24000)
    streamed, _ = stream_encode(source, NOTE, 24000, VOICE_NOTE_RATE)
    whole = encode(source, in_rate=24000, fmt=NOTE, out_rate=VOICE_NOTE_RATE)
    # Same Opus packets, only cut into shorter Ogg pages: decoders see identical audio.
    assert streamed != whole
    np.testing.assert_array_equal(ffmpeg_decode(streamed, "ogg"), ffmpeg_decode(whole, "ogg"))


def test_stream_hands_out_pages_before_close_and_each_prefix_plays(
    speech: tuple[Pcm, int],
) -> None:
    pcm, rate = speech
    encoder = open_stream_encoder(NOTE, in_rate=rate, out_rate=VOICE_NOTE_RATE)
    parts = [encoder.feed(chunk) for chunk in irregular_chunks(pcm)]
    tail = encoder.close()
    early = b"".join(parts)

    assert len(early) / (len(early) + len(tail)) > 0.9
    # Audio pages (after OpusHead and OpusTags) go out every ~200 ms, not at the end.
    pages = accumulate(part.count(b"OggS") for part in parts)
    first_audio = next(i for i, sent in enumerate(pages) if sent > 2)
    assert first_audio < len(parts) / 4
    # Feeds end on page boundaries, so what a client holds so far is already a playable file.
    prefix = b"".join(parts[: len(parts) // 2])
    assert audio_stream(ffprobe_json(prefix, "ogg"))["codec_name"] == "opus"
    assert 0 < ffmpeg_decode(prefix, "ogg", rate=rate).size < pcm.size


# --- the job contract and the real worker ------------------------------------------------------


def test_the_job_contract_takes_voice_note() -> None:
    job = parse_job({"text": "Hi.", "format": "voice_note"}, JobLimits())
    assert isinstance(job, SynthesizeJob) and job.format is NOTE


def test_a_url_job_stores_a_voice_note(worker: WorkerContext, api_key: str) -> None:
    [result] = run_job(job(api_key), worker)
    assert (result["content_type"], result["sample_rate"]) == ("audio/ogg", VOICE_NOTE_RATE)
    tenant = worker.tenants.authenticate(api_key)
    [stored] = (worker.settings.audio_dir / "tts" / tenant.id).rglob("*.ogg")
    data = stored.read_bytes()
    assert urlsplit(result["url"]).path.endswith(".ogg")
    assert result["bytes"] == len(data) < WHATSAPP_VOICE_NOTE_MAX_BYTES
    assert_voice_note(data, result["duration_s"])


def test_base64_and_streamed_jobs_return_voice_notes(worker: WorkerContext, api_key: str) -> None:
    [inline] = run_job(job(api_key, delivery="base64", cache=False), worker)
    assert_voice_note(base64.b64decode(inline["audio_base64"]), inline["duration_s"])

    items = run_job(job(api_key, delivery="stream", cache=False), worker)
    assert items[-1]["final"] and {item["format"] for item in items} == {"voice_note"}
    streamed = b"".join(base64.b64decode(item["audio_base64"]) for item in items)
    assert items[-1]["bytes"] == len(streamed)
    assert_voice_note(streamed, items[-1]["duration_s"])


def test_a_job_asking_another_rate_is_unsupported_format(
    worker: WorkerContext, api_key: str
) -> None:
    with pytest.raises(TTSError) as caught:
        run_job(job(api_key, sample_rate=48000), worker)
    assert caught.value.code is ErrorCode.UNSUPPORTED_FORMAT
