"""The audio-store protocol: local disk with HMAC-signed URLs now, S3-compatible buckets next.

Object keys are ``tts/{tenant_id}/{engine}/{object_id}.{ext}``: the tenant is part of every key,
so a store can refuse to sign or read outside the caller's own prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.errors import InvalidInput

_KEY_PATTERN = re.compile(
    r"^tts/([A-Za-z0-9_-]{1,64})/([a-z0-9_-]{1,32})/([A-Za-z0-9_-]{1,128})\.([a-z0-9]{1,8})$"
)


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: datetime


class AudioStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def sign(self, key: str, ttl_s: int) -> SignedUrl: ...


def object_key(tenant_id: str, engine: str, object_id: str, extension: str) -> str:
    key = f"tts/{tenant_id}/{engine}/{object_id}.{extension}"
    if _KEY_PATTERN.match(key) is None:
        raise InvalidInput("cannot build a storage key from these identifiers")
    return key


def is_valid_key(key: str) -> bool:
    return _KEY_PATTERN.match(key) is not None
