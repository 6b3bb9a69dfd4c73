"""The deterministic audio cache, kept in the audio store itself (local disk or a bucket).

Each entry is the audio object plus a small JSON sidecar with what a result needs (duration,
size, rate), so a hit is one small read and a presign: no decoding, no engine. Entries live under
the tenant's own prefix, so one tenant's cache can never answer another's job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from shared.errors import StorageUnavailable
from shared.storage.base import AudioStore, object_key

_log = logging.getLogger(__name__)
META_EXTENSION = "json"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What one cached audio is (it lives at its slot's ``audio_key``)."""

    duration_s: float
    bytes: int


@dataclass(frozen=True, slots=True)
class CacheSlot:
    """The two object keys of one cache key for one tenant."""

    audio_key: str
    meta_key: str

    @classmethod
    def of(cls, tenant_id: str, engine: str, cache_key: str, extension: str) -> CacheSlot:
        return cls(
            audio_key=object_key(tenant_id, engine, cache_key, extension),
            meta_key=object_key(tenant_id, engine, cache_key, META_EXTENSION),
        )


def lookup(store: AudioStore, slot: CacheSlot) -> CacheEntry | None:
    """The cached entry, or None on a miss; an unreachable store counts as a miss."""
    try:
        raw = store.get(slot.meta_key)
    except StorageUnavailable as exc:
        _log.warning("audio cache lookup failed, synthesizing instead: %s", exc)
        return None
    if raw is None:
        return None
    try:
        return CacheEntry(**json.loads(raw))
    except (ValueError, TypeError):
        _log.warning("ignoring a corrupt audio cache entry at %s", slot.meta_key)
        return None


def fill(
    store: AudioStore, slot: CacheSlot, entry: CacheEntry, audio: bytes, content_type: str
) -> None:
    """Store the audio, then its sidecar: a reader that finds the sidecar finds the audio."""
    store.put(slot.audio_key, audio, content_type)
    store.put(slot.meta_key, json.dumps(asdict(entry)).encode(), "application/json")
