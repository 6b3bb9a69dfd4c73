"""API keys: ``stts_<prefix>_<secret>``. The prefix finds the row; only a hash of the key is stored.

The secret has 256 bits of entropy, so a single SHA-256 is as strong as a slow KDF here and keeps
a cache-miss lookup cheap. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_SCHEME = "stts"
_KEY_PATTERN = re.compile(rf"^{KEY_SCHEME}_([a-z0-9]{{8}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    prefix: str
    digest: str


def new_api_key() -> tuple[str, ParsedKey]:
    """A fresh key and what the store keeps of it (its prefix and digest)."""
    prefix = secrets.token_hex(4)
    api_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return api_key, ParsedKey(prefix=prefix, digest=hash_api_key(api_key))


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def parse_api_key(api_key: str) -> ParsedKey | None:
    """The key's lookup prefix and digest, or None when it cannot be one of ours."""
    match = _KEY_PATTERN.match(api_key)
    if match is None:
        return None
    return ParsedKey(prefix=match.group(1), digest=hash_api_key(api_key))


def digests_match(expected: str, actual: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), actual.encode("ascii"))
