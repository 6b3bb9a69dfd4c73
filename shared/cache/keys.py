"""Cache keys for finished audio: the same request, byte for byte, maps to the same object.

The key hashes every input that changes the audio. The encoding is canonical JSON (sorted keys,
no whitespace, floats written at a fixed precision), so field boundaries cannot blur: text that
contains a separator or looks like another field still yields a different document.
"""

from __future__ import annotations

import hashlib
import json
import math

from shared.errors import InvalidInput

# Bump when the encoding or the meaning of a field changes: every older cache entry then misses
# instead of serving audio made under other rules.
CACHE_KEY_VERSION = 1


def audio_cache_key(
    *,
    engine: str,
    model_version: str,
    voice: str,
    voice_version: str | None,
    language: str,
    speed: float,
    format: str,
    sample_rate: int,
    text: str,
) -> str:
    """SHA-256 hex (64 characters, a valid storage ``object_id``) of the synthesis inputs.

    ``text`` is what will be spoken as the caller canonicalised it (normalized text, or an SSML
    plan's canonical form). ``speed`` counts to 3 decimals: closer values sound the same and
    must not split the cache over float noise.
    """
    if not math.isfinite(speed):
        raise InvalidInput(f"speed must be a finite number, not {speed!r}")
    document = {
        "v": CACHE_KEY_VERSION,
        "engine": engine,
        "model_version": model_version,
        "voice": voice,
        "voice_version": voice_version,
        "language": language,
        # A fixed-precision string, not a float: "1.100" has one spelling, 1.1 has several.
        "speed": f"{speed:.3f}",
        "format": str(format),
        "sample_rate": int(sample_rate),
        "text": text,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
