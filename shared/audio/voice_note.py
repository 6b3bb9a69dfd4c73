"""Ogg/Opus through libopus (FFmpeg's ``libopus`` wrapper, via PyAV): ``ogg_opus`` and its
WhatsApp voice-note preset.

Both run libopus at complexity 7, the lowest at which it runs its signal analysis (speech or music,
VBR and bandwidth decisions). On Piper speech at 24 kHz (``bench/audio_encode.py --sweep``,
WB-PESQ): ``audio`` mode at complexity 0-6 codes speech as music, scoring 4.14-4.33 against 7's
4.50 and running ~27 % over its bitrate, for ~10 ms less CPU per second of speech; 8-10 score
4.51 for ~20 % more CPU than 7. libsndfile, which ``ogg_opus`` used before, runs libopus at
complexity 10 with no way to change it, and cost 1.7-4.7x the CPU of this path (4.4x at 24 kHz).

WhatsApp shows an ``"audio"`` message with ``"voice": true`` as a voice note only when the file is
Ogg with the Opus codec and at most 512 KB; bigger or other files arrive as plain audio. The limit
is on bytes, so the bitrate decides how long a reply can be: at 32 kbps a minute is 60 s x 32,000 /
8 = 240,000 bytes plus Ogg page headers and VBR swing (measured for a minute of Piper speech:
244,501 bytes whole, 250,981 streamed in 200 ms pages; white noise 241,257), under half of 524,288.
The limit is reached only past ~2 min (524,288 / ~4,100 bytes a second). Constrained VBR keeps any
content, even noise, near the target (plain VBR measured ~45 kbps on a pure tone), and 32 kbps
leaves Opus speech at 24 kHz close to transparent.
"""

from __future__ import annotations

from shared.audio.pyav_encoder import AvSetup, PyAvEncoder

# The size WhatsApp shows as a voice note, at most.
WHATSAPP_VOICE_NOTE_MAX_BYTES = 512 * 1024

VOICE_NOTE_BITRATE = 32_000

# See the module docstring for how this was chosen (bench/audio_encode.py --sweep).
OPUS_COMPLEXITY = 7


def opus_bitrate(rate: int) -> int:
    """Target bits per second for ``ogg_opus`` mono speech at ``rate`` Hz.

    Measured on Piper speech: 16 kbps at 8 kHz, 24 kbps at 16 kHz and 32 kbps at 24/48 kHz score
    as well as libsndfile's defaults did (21, 28, 37 and 61 kbps). 48 kHz needs no more than 24 kHz,
    because TTS audio has nothing above the engines' 11-12 kHz band.
    """
    if rate <= 8000:
        return 16_000
    if rate <= 16000:
        return 24_000
    return 32_000


def opus_setup(
    label: str,
    bit_rate: int,
    application: str,
    *,
    page_ms: float | None = None,
    vbr: str = "on",
    complexity: int = OPUS_COMPLEXITY,
) -> AvSetup:
    """Ogg/Opus settings; ``page_ms`` None keeps FFmpeg's 1 s Ogg pages (the smallest file).

    A stream asks for shorter pages so its bytes arrive sooner, for ~40 bytes of page header each.
    ``complexity`` is a parameter so the bench can sweep it.
    """
    options = {
        "application": application,
        "compression_level": str(complexity),
        "vbr": vbr,
        "frame_duration": "20",  # ms; Opus's default, the usual size for speech
    }
    pages = {} if page_ms is None else {"page_duration": str(round(page_ms * 1000))}  # in us
    # flt: libopus takes packed float (or s16); mono packed is the same bytes as our PCM.
    return AvSetup(label, "ogg", "libopus", "flt", bit_rate, options, pages)


class OggOpusEncoder(PyAvEncoder):
    """Mono float32 PCM in [-1, 1] at ``rate`` Hz in, Ogg/Opus bytes out as pages complete.

    ``audio`` mode, as libsndfile used: at complexity 7 it scored as high on speech as ``voip``
    (WB-PESQ 4.50-4.52 against 4.49-4.50) and keeps the waveform of any other content (a sine
    sweep correlates 0.98-1.00 with its decode, against 0.92-0.95 in ``voip``). The Opus header's
    pre-skip and the last page's granule position let decoders trim the codec's delay and
    padding, so a decoded file is exactly as long as its input.
    """

    def __init__(self, rate: int, *, page_ms: float | None = None) -> None:
        super().__init__(opus_setup("ogg_opus", opus_bitrate(rate), "audio", page_ms=page_ms), rate)


class VoiceNoteEncoder(PyAvEncoder):
    """Like ``OggOpusEncoder``, at the voice note's own settings: one bitrate, speech mode, a bound.

    ``voip`` tunes for speech intelligibility; constrained VBR keeps any content near the bitrate,
    so the 512 KB limit holds.
    """

    def __init__(self, rate: int, *, page_ms: float | None = None) -> None:
        setup = opus_setup(
            "voice_note", VOICE_NOTE_BITRATE, "voip", page_ms=page_ms, vbr="constrained"
        )
        super().__init__(setup, rate)
