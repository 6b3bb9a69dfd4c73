"""Raw PCM16 from a vendor, as it arrives, into the engine protocol's float32.

Network reads split the body anywhere, so a sample's two bytes may land in two reads: the odd
byte waits for the next read, and a body that ends on one is not PCM16 at all.
"""

from __future__ import annotations

import numpy as np

from shared.engines.base import Pcm

# The inverse of shared.audio.encode.float_to_int16 (which scales by 32767): a vendor's samples
# come back out of the product's encoders unchanged.
_FULL_SCALE = 32767.0


class S16Decoder:
    """Little-endian int16 bytes, fed in any pieces, to float32 chunks in [-1, 1]."""

    def __init__(self) -> None:
        self._carry = b""

    @property
    def pending(self) -> bool:
        """A byte is waiting for the other half of its sample."""
        return bool(self._carry)

    def feed(self, data: bytes) -> Pcm:
        data = self._carry + data
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / _FULL_SCALE
        # -32768 is the one sample past -1.0 at this scale.
        return np.clip(samples, -1.0, 1.0)
