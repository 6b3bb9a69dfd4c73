"""The audio-store protocol: local disk with HMAC-signed URLs, or an S3-compatible bucket.

Object keys are ``tts/{tenant_id}/{engine}/{object_id}.{ext}`` for audio and
``voices/{tenant_id}/{voice_id}/{name}.{ext}`` for a cloned voice's objects (its reference and
latents): the tenant is part of every key, so a store can refuse to sign or read outside the
caller's own prefix. A cache hash (64 hex characters) is a valid ``object_id``, so cached audio
lives under the same layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.errors import InvalidInput

# Matched with fullmatch: "$" alone would also accept a trailing newline.
_KEY_PATTERN = re.compile(
    r"tts/([A-Za-z0-9_-]{1,64})/([a-z0-9_-]{1,32})/([A-Za-z0-9_-]{1,128})\.([a-z0-9]{1,8})"
    r"|voices/([A-Za-z0-9_-]{1,64})/(v_[0-9a-f]{16})/([a-z0-9_-]{1,32})\.([a-z0-9]{1,8})"
)

# A SigV4 presigned URL cannot live longer than 7 days; a minute is the shortest URL a client can
# reasonably fetch before it dies. Both stores hold signed URLs to the same bounds.
MIN_URL_TTL_S = 60
MAX_URL_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: datetime


class AudioStore(Protocol):
    """Where finished audio lives; every method refuses keys outside the object-key layout."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no object at ``key``."""
        ...

    def sign(self, key: str, ttl_s: int) -> SignedUrl: ...

    def delete(self, key: str) -> None:
        """Remove the object; a key with no object is no error (a retried delete succeeds)."""
        ...


def object_key(tenant_id: str, engine: str, object_id: str, extension: str) -> str:
    key = f"tts/{tenant_id}/{engine}/{object_id}.{extension}"
    if _KEY_PATTERN.fullmatch(key) is None:
        raise InvalidInput("cannot build a storage key from these identifiers")
    return key


def voice_object_key(tenant_id: str, voice_id: str, name: str, extension: str) -> str:
    """Where a cloned voice keeps one of its objects (``name``: reference, latents)."""
    key = f"voices/{tenant_id}/{voice_id}/{name}.{extension}"
    if _KEY_PATTERN.fullmatch(key) is None:
        raise InvalidInput("cannot build a voice storage key from these identifiers")
    return key


def is_valid_key(key: str) -> bool:
    return _KEY_PATTERN.fullmatch(key) is not None


def check_url_ttl(ttl_s: int) -> None:
    """Raise ``InvalidInput`` unless ``ttl_s`` is a whole number of seconds within the bounds."""
    # bool is an int subclass: True would otherwise read as a 1-second TTL.
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int):
        raise InvalidInput(f"URL lifetime must be whole seconds, not {ttl_s!r}")
    if not MIN_URL_TTL_S <= ttl_s <= MAX_URL_TTL_S:
        raise InvalidInput(f"URL lifetime {ttl_s} s is outside {MIN_URL_TTL_S}..{MAX_URL_TTL_S} s")
