"""AAC-LC in ADTS framing, with FFmpeg's native ``aac`` encoder through PyAV (no subprocess).

ADTS gives every frame its own 7-byte header and has no file header or trailer, so the bytes
written so far are a playable file at every frame boundary: the muxer never seeks back, and a
stream is just the frames in order. That is what OpenAI's ``response_format: aac`` returns and what
WhatsApp takes as audio/aac.
"""

from __future__ import annotations

from shared.audio.pyav_encoder import AvSetup, PyAvEncoder


def aac_bitrate(rate: int) -> int:
    """Target bits per second for mono speech at ``rate`` Hz.

    Below 22.05 kHz the band ends at 8 kHz or lower and 32 kbps already codes all of it (white noise
    keeps its full band through FFmpeg's encoder); 8 kHz AAC cannot spend more than ~39 kbps anyway.
    At 22.05/24 kHz (the engines' rates) 64 kbps keeps the full 11-12 kHz band; at 44.1/48 kHz the
    encoder low-passes at ~17 kHz, far above speech. Real output runs ~5 % above the target.
    """
    return 32_000 if rate < 22050 else 64_000


class AdtsEncoder(PyAvEncoder):
    """Mono float32 PCM in [-1, 1] at ``rate`` Hz in, ADTS bytes out as frames complete.

    FFmpeg primes each stream with 1024 samples of delay, and ADTS has no field to tell a decoder
    to skip them, so decoded audio starts ~43 ms late at 24 kHz (the same holds for every ADTS
    encoder).
    """

    def __init__(self, rate: int) -> None:
        # fltp: the only sample format FFmpeg's aac encoder takes.
        super().__init__(AvSetup("aac", "adts", "aac", "fltp", aac_bitrate(rate)), rate)
