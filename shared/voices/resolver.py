"""From a tenant's voice id to the ``Voice`` an engine speaks with.

Two kinds of id: an engine's built-in voice, listed as ``builtin:<name>`` (its bare name is
accepted too) and the same for every tenant, and a tenant's cloned voice, ``v_`` + 16 hex,
looked up in the tenant's own records. A cloned voice speaks from latents computed once, when it
was created: a warm worker keeps them ready in a bounded LRU, a cold one reads them from storage,
and nothing here ever reads the reference audio again.

Every job with a cloned voice reads the voice's record, so a deleted voice stops at once on every
worker (its cached audio is never found again) and an edit is seen by the next job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from shared.engines.base import CloningEngine, Engine, Voice
from shared.errors import InternalError, UnsupportedByEngine, VoiceNotFound
from shared.storage.base import AudioStore
from shared.tenants.base import Tenant, TenantStore
from shared.tenants.voices import VoiceRecord, is_voice_id, voice_not_found
from shared.voices.latents import LatentsCache, digest, from_bytes

BUILTIN_PREFIX = "builtin:"
_log = logging.getLogger(__name__)


def builtin_id(name: str) -> str:
    return f"{BUILTIN_PREFIX}{name}"


def cloning_engine(engine: Engine) -> CloningEngine:
    """``engine`` as one that clones, or ``UnsupportedByEngine`` saying what it can do."""
    if not isinstance(engine, CloningEngine):
        raise UnsupportedByEngine(
            f"the {engine.name} engine cannot clone voices or speak cloned ones; it speaks its "
            "built-in voices (see voices.list). Cloned voices need a worker running XTTS"
        )
    return engine


class VoiceResolver:
    def __init__(
        self, tenants: TenantStore, storage: AudioStore, *, cache_entries: int = 64
    ) -> None:
        self._tenants = tenants
        self._storage = storage
        self.ready: LatentsCache[Voice] = LatentsCache(cache_entries)

    def resolve(self, tenant: Tenant | None, engine: Engine, voice_id: str | None) -> Voice:
        """The voice ``voice_id`` names for ``tenant`` on ``engine`` (None: the engine's default);
        ``VoiceNotFound`` when there is none, the same for another tenant's voice."""
        if voice_id is not None and is_voice_id(voice_id):
            if tenant is None:
                raise voice_not_found()
            return self.cloned(self._tenants.get_voice(tenant.id, voice_id), engine)
        name = voice_id or engine.default_voice
        return builtin(engine, name.removeprefix(BUILTIN_PREFIX))

    def cloned(self, record: VoiceRecord, engine: Engine) -> Voice:
        """The voice ``record`` describes, ready to speak on ``engine``."""
        cloner = cloning_engine(engine)
        if record.engine != engine.name:
            raise UnsupportedByEngine(
                f"this voice was cloned for the {record.engine} engine; this worker runs "
                f"{engine.name}"
            )
        if record.latents_object_key is None:
            raise VoiceNotFound(
                "this voice is still being created, or its creation failed part way: wait a "
                "moment, or delete it and create it again"
            )
        key = (record.tenant_id, record.voice_id, record.version)
        voice = self.ready.get_or_load(key, lambda: self._load(record, cloner))
        # The cached voice keeps the language it was loaded with; the record's is the current.
        if voice.language != record.language:
            voice = replace(voice, language=record.language)
        return voice

    def forget(self, tenant_id: str, voice_id: str) -> None:
        """A deleted voice's latents leave this worker's memory at once."""
        self.ready.forget(tenant_id, voice_id)

    def builtins(self, engine: Engine) -> Sequence[Voice]:
        """The engine's built-in voices, as every tenant may ask for them."""
        return [replace(voice, id=builtin_id(voice.id)) for voice in engine.voices()]

    def _load(self, record: VoiceRecord, engine: CloningEngine) -> Voice:
        assert record.latents_object_key is not None
        data = self._storage.get(record.latents_object_key)
        if data is None:
            raise InternalError(
                f"voice {record.voice_id} has no stored latents; delete it and create it again"
            )
        if digest(data) != record.version:
            # The record names the latents it was cloned with: anything else is not this voice.
            raise InternalError(f"voice {record.voice_id}'s stored latents do not match it")
        _log.info("loaded voice %s from storage", record.voice_id)
        return engine.cloned_voice(
            record.voice_id,
            version=record.version,
            latents=from_bytes(data),
            language=record.language,
        )


def builtin(engine: Engine, name: str) -> Voice:
    """A built-in voice under its listed id, so results name it as the listing does."""
    voice = engine.voice(name)
    return replace(voice, id=builtin_id(voice.id))
