"""WhatsApp voice notes: Ogg/Opus, mono, speech-tuned, at a fixed bitrate sized for the app's limit.

WhatsApp shows an ``"audio"`` message with ``"voice": true`` as a voice note only when the file is
Ogg with the Opus codec and at most 512 KB; bigger or other files arrive as plain audio. The limit
is on bytes, so the bitrate decides how long a reply can be: at 32 kbps a minute is 60 s x 32,000 /
8 = 240,000 bytes plus Ogg page headers and VBR swing (measured for a minute of Piper speech:
244,940 bytes whole, 251,420 streamed in 200 ms pages; white noise 241,808), under half of 524,288.
The limit is reached only past ~2 min (524,288 / ~4,100 bytes a second). Constrained VBR keeps any
content, even noise, near the target (plain VBR measured ~45 kbps on a pure tone), and 32 kbps
leaves Opus speech at 24 kHz close to transparent.

libopus (FFmpeg's ``libopus`` wrapper through PyAV, as aac uses FFmpeg's own encoder) rather than
libsndfile, which ``ogg_opus`` uses: libsndfile reaches Opus's bitrate only through a 0..1
compression level (0 measured ~260 kbps) and exposes no application (voip) setting; libopus takes
bits per second, ``voip`` and constrained VBR directly, and measured ~4x faster here.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.audio.pyav_encoder import AvSetup, PyAvEncoder

# The size WhatsApp shows as a voice note, at most.
WHATSAPP_VOICE_NOTE_MAX_BYTES = 512 * 1024

VOICE_NOTE_BITRATE = 32_000

_OPUS_OPTIONS: Mapping[str, str] = {
    "application": "voip",  # tuned for speech intelligibility rather than music
    "vbr": "constrained",  # a bounded bitrate: the size limit holds for any content
    "frame_duration": "20",  # ms; Opus's default, the usual size for speech
}


class VoiceNoteEncoder(PyAvEncoder):
    """Mono float32 PCM in [-1, 1] at ``rate`` Hz in, Ogg/Opus bytes out as pages complete.

    ``page_ms`` None keeps FFmpeg's 1 s Ogg pages (the smallest file); a stream asks for shorter
    ones so its bytes arrive sooner, for ~30 bytes of page header each. The Opus header's
    pre-skip and the last page's granule position let decoders trim the codec's delay and
    padding, so a decoded note is exactly as long as its input.
    """

    def __init__(self, rate: int, *, page_ms: float | None = None) -> None:
        pages = {} if page_ms is None else {"page_duration": str(round(page_ms * 1000))}  # in us
        # flt: libopus takes packed float (or s16); mono packed is the same bytes as our PCM.
        setup = AvSetup(
            "voice_note", "ogg", "libopus", "flt", VOICE_NOTE_BITRATE, _OPUS_OPTIONS, pages
        )
        super().__init__(setup, rate)
