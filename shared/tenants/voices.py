"""Cloned-voice records: what a tenant store keeps about each voice, and the rules both stores
apply before they touch their database, so SQLite and Supabase refuse the same input alike.

The voice's audio lives in object storage; a record holds the keys of its reference audio and
of the engine's conditioning latents, plus a ``version`` that keys the audio cache.

Version rule: the version changes whenever the latents may have changed, and only then. Audio
is made from the latents alone (never from the reference), so a name, description or language
edit keeps it: the job's language is part of the audio-cache key already. Callers should pass a
digest of the latents' bytes: every worker then agrees on it, and identical latents share cache
entries. A latents change without a version mints a random one: a needless new version costs
only cache misses, a stale one would serve another voice's audio.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any, Final

from shared.errors import InvalidInput, QuotaExceeded, VoiceNotFound

MAX_VOICE_NAME_CHARS = 100
MAX_VOICE_DESCRIPTION_CHARS = 500
# S3's limit on an object key, in UTF-8 bytes.
MAX_OBJECT_KEY_BYTES = 1024

# 64 random bits: ids are per tenant, so a collision would need billions of one tenant's voices.
_VOICE_ID = re.compile(r"v_[0-9a-f]{16}")
_ENGINE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# BCP 47-like tags as engines name languages: "en", "pt-BR", "zh-cn".
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")
# Room for "sha256-<64 hex>"; no spaces or separators that would blur a cache-key field.
_VERSION = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Whitespace a description may span lines with; every other control character is refused.
_DESCRIPTION_WHITESPACE = frozenset("\t\n\r")
_NAME_RULE = (
    f"use 1-{MAX_VOICE_NAME_CHARS} characters, not only whitespace, and no control characters"
)


@dataclass(frozen=True, slots=True)
class VoiceRecord:
    """One tenant's cloned voice. ``voice_id`` is the server's (``v_`` + 16 hex), never the
    client's; the object keys are None until their objects are stored."""

    tenant_id: str
    voice_id: str
    name: str
    engine: str
    language: str | None
    description: str | None
    version: str
    reference_object_key: str | None
    latents_object_key: str | None
    created_at: datetime
    updated_at: datetime


# The voices table's columns in both stores: one per record field, in the same order.
VOICE_COLUMNS: Final = tuple(field.name for field in fields(VoiceRecord))


class Unset(Enum):
    """A field not given, where None means "clear it"."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceFields:
    """What a caller sets on a new voice; the id is always drawn, and the version minted unless
    given (the module's version rule)."""

    name: str
    engine: str
    language: str | None = None
    description: str | None = None
    reference_object_key: str | None = None
    latents_object_key: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceChanges:
    """What an update sets: a field left UNSET is kept, None clears an optional one. The
    engine is fixed at creation."""

    name: str | Unset = UNSET
    description: str | Unset | None = UNSET
    language: str | Unset | None = UNSET
    reference_object_key: str | Unset | None = UNSET
    latents_object_key: str | Unset | None = UNSET
    version: str | Unset = UNSET


def check_fields(voice: VoiceFields) -> None:
    """``InvalidInput`` for what a store would refuse, so a caller can ask before it spends
    anything on the voice (a GPU pass) rather than at the insert."""
    _checked(asdict(voice))


def new_voice_columns(voice: VoiceFields) -> dict[str, str | None]:
    """The columns both stores insert for a new voice, checked (``InvalidInput``), with a
    fresh ``voice_id``, and a version unless one is given."""
    columns = _checked(asdict(voice))
    return {
        "voice_id": f"v_{secrets.token_hex(8)}",
        **columns,
        "version": voice.version or _minted_version(),
    }


def changed_columns(changes: VoiceChanges) -> dict[str, str | None]:
    """The columns an update sets, checked (``InvalidInput``); empty when nothing is given.
    New latents without a version get a minted one (the module's version rule)."""
    given = {
        field.name: getattr(changes, field.name)
        for field in fields(changes)
        if getattr(changes, field.name) is not UNSET
    }
    columns = _checked(given)
    if "latents_object_key" in columns:
        columns.setdefault("version", _minted_version())
    return columns


def voice_record(row: Mapping[str, object]) -> VoiceRecord:
    """A record from a voices row of either store, keyed by ``VOICE_COLUMNS``: SQLite's text
    times and PostgREST's JSON alike."""
    return VoiceRecord(
        tenant_id=str(row["tenant_id"]),
        voice_id=str(row["voice_id"]),
        name=str(row["name"]),
        engine=str(row["engine"]),
        language=_optional_str(row["language"]),
        description=_optional_str(row["description"]),
        version=str(row["version"]),
        reference_object_key=_optional_str(row["reference_object_key"]),
        latents_object_key=_optional_str(row["latents_object_key"]),
        created_at=datetime.fromisoformat(str(row["created_at"])),
        updated_at=datetime.fromisoformat(str(row["updated_at"])),
    )


def is_voice_id(voice_id: str) -> bool:
    """Whether ``voice_id`` could be one the server drew; any other names no voice, and is
    answered without a query."""
    return _VOICE_ID.fullmatch(voice_id) is not None


def voice_not_found() -> VoiceNotFound:
    """One answer for a voice that does not exist and for another tenant's: it names no id, so
    it reveals nothing, and never echoes what was pasted into the field."""
    return VoiceNotFound("this tenant has no such voice")


def voice_limit_reached(voices: int, max_voices: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"this tenant has {voices} of its {max_voices} voices; delete one or raise max_voices"
    )


def _minted_version() -> str:
    return f"r-{secrets.token_hex(8)}"


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _checked(columns: Mapping[str, Any]) -> dict[str, str | None]:
    """The given columns, each checked by its rule, in the order given."""
    for column, value in columns.items():
        _CHECKS[column](value)
    return dict(columns)


def _check_name(name: str) -> None:
    """A voice name shows on one line in listings, like a tenant's."""
    if not name.strip() or len(name) > MAX_VOICE_NAME_CHARS:
        raise InvalidInput(f"a voice name of {len(name)} characters is refused: {_NAME_RULE}")
    bad = next((c for c in name if unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise InvalidInput(
            f"a voice name must not contain the control character U+{ord(bad):04X}: {_NAME_RULE}"
        )


def _check_description(description: str | None) -> None:
    if description is None:
        return
    if len(description) > MAX_VOICE_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"a voice description is at most {MAX_VOICE_DESCRIPTION_CHARS} characters,"
            f" not {len(description)}"
        )
    bad = next(
        (
            c
            for c in description
            if unicodedata.category(c) == "Cc" and c not in _DESCRIPTION_WHITESPACE
        ),
        None,
    )
    if bad is not None:
        raise InvalidInput(
            f"a voice description must not contain the control character U+{ord(bad):04X}"
        )


def _check_engine(engine: str) -> None:
    if not _ENGINE.fullmatch(engine):
        raise InvalidInput("an engine name is 1-32 lowercase letters, digits, '_' or '-'")


def _check_language(language: str | None) -> None:
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise InvalidInput("a voice language is a language tag such as 'en', 'pt-BR' or 'zh-cn'")


def _check_version(version: str | None) -> None:
    if version is not None and not _VERSION.fullmatch(version):
        raise InvalidInput("a voice version is 1-128 letters, digits, '.', '_', ':' or '-'")


def _check_object_key(field: str, key: str | None) -> None:
    if key is None:
        return
    size = len(key.encode("utf-8"))
    if not 1 <= size <= MAX_OBJECT_KEY_BYTES or any(unicodedata.category(c) == "Cc" for c in key):
        raise InvalidInput(
            f"{field} must be 1-{MAX_OBJECT_KEY_BYTES} bytes of UTF-8 without control characters"
        )


_CHECKS: Final[Mapping[str, Callable[[Any], None]]] = {
    "name": _check_name,
    "engine": _check_engine,
    "language": _check_language,
    "description": _check_description,
    "reference_object_key": partial(_check_object_key, "reference_object_key"),
    "latents_object_key": partial(_check_object_key, "latents_object_key"),
    "version": _check_version,
}
