"""Voice operations: list what a tenant may speak with, and clone, show, edit and delete the
tenant's own voices.

A voice is cloned once: its reference is fetched or decoded and checked, the engine computes
its latents, and both are stored under the tenant's prefix before the voice's record says it is
ready. Every job that speaks it afterwards loads the latents (``shared.voices.resolver``). Each
step that can fail for the caller runs before the next costs more: the reference is checked
before anything is charged, and the tenant's room for a voice before the GPU pass.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.engines.base import Engine, Voice
from shared.errors import InvalidInput
from shared.jobs import (
    VoiceDeleted,
    VoiceEntry,
    VoicesCreateJob,
    VoicesDeleteJob,
    VoicesGetJob,
    VoicesResult,
    VoicesUpdateJob,
)
from shared.storage.base import voice_object_key
from shared.telemetry import JobEvent
from shared.tenants.base import Tenant
from shared.tenants.voices import (
    UNSET,
    VoiceChanges,
    VoiceFields,
    VoiceRecord,
    check_fields,
    is_voice_id,
    voice_limit_reached,
)
from shared.voices import latents
from shared.voices.intake import reference_bytes
from shared.voices.reference import decode_reference
from shared.voices.resolver import builtin_id, cloning_engine
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)
_REFERENCE_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}
_LATENTS_TYPE = "application/x-npz"


def needs_tenant(tenant: Tenant | None) -> Tenant:
    """Cloned voices belong to a tenant: a tenant-free operator run has none to act on."""
    if tenant is None:
        raise InvalidInput("voice operations act on a tenant's voices: send its API key")
    return tenant


def list_voices(ctx: WorkerContext, tenant: Tenant | None) -> VoicesResult:
    """The engine's built-in voices, then the tenant's cloned ones, oldest first."""
    engine = ctx.engines.default.engine
    entries = [builtin_entry(voice) for voice in ctx.voices.builtins(engine)]
    if tenant is not None:
        entries += [cloned_entry(record) for record in ctx.tenants.list_voices(tenant.id)]
    default = builtin_id(engine.default_voice) if engine.default_voice else ""
    return VoicesResult(engine=engine.name, default_voice=default, voices=entries)


def get_voice(job: VoicesGetJob, ctx: WorkerContext, tenant: Tenant, event: JobEvent) -> VoiceEntry:
    if not is_voice_id(job.voice_id):
        return builtin_entry(ctx.voices.resolve(tenant, ctx.engines.default.engine, job.voice_id))
    record = ctx.tenants.get_voice(tenant.id, job.voice_id)
    _describe(event, record)
    return cloned_entry(record)


def create_voice(
    job: VoicesCreateJob, ctx: WorkerContext, tenant: Tenant, event: JobEvent
) -> VoiceEntry:
    """Clone a voice; charged (``TTS_VOICE_CREATE_CHARS``) only once its reference is fit."""
    engine = cloning_engine(ctx.engines.default.engine)
    fields = VoiceFields(
        name=job.name, engine=engine.name, language=job.language, description=job.description
    )
    check_fields(fields)
    settings = ctx.settings
    data = reference_bytes(
        job,
        fetch_timeout_s=settings.voice_fetch_timeout_s,
        allow_http=settings.voice_fetch_allow_http,
    )
    reference = decode_reference(data, target_rate=engine.reference_rate)
    _check_room(ctx, tenant)
    ctx.tenants.authorize(tenant.id, settings.voice_create_chars)
    event.chars = settings.voice_create_chars
    event.engine = engine.name
    event.audio_s = round(reference.duration_s, 3)
    stored = latents.to_bytes(engine.compute_latents(reference.pcm))
    record = ctx.tenants.create_voice(tenant.id, replace(fields, version=latents.digest(stored)))
    _describe(event, record)
    reference_key = voice_object_key(tenant.id, record.voice_id, "reference", reference.container)
    latents_key = voice_object_key(tenant.id, record.voice_id, "latents", "npz")
    try:
        ctx.storage.put(reference_key, data, _REFERENCE_TYPES[reference.container])
        ctx.storage.put(latents_key, stored, _LATENTS_TYPE)
        record = ctx.tenants.update_voice(
            tenant.id,
            record.voice_id,
            VoiceChanges(
                reference_object_key=reference_key,
                latents_object_key=latents_key,
                version=record.version,
            ),
        )
    except BaseException:
        _undo_create(ctx, record, (reference_key, latents_key))
        raise
    return cloned_entry(record)


def update_voice(
    job: VoicesUpdateJob, ctx: WorkerContext, tenant: Tenant, event: JobEvent
) -> VoiceEntry:
    given = job.model_fields_set
    changes = VoiceChanges(
        name=job.name if "name" in given and job.name is not None else UNSET,
        description=job.description if "description" in given else UNSET,
        language=job.language if "language" in given else UNSET,
    )
    record = ctx.tenants.update_voice(tenant.id, job.voice_id, changes)
    _describe(event, record)
    return cloned_entry(record)


def delete_voice(
    job: VoicesDeleteJob, ctx: WorkerContext, tenant: Tenant, event: JobEvent
) -> VoiceDeleted:
    """Objects first, then the record: a delete that fails part way can be sent again, and no
    record is ever left pointing at objects that are gone without saying so."""
    record = ctx.tenants.get_voice(tenant.id, job.voice_id)
    _describe(event, record)
    for key in _object_keys(record):
        ctx.storage.delete(key)
    ctx.tenants.delete_voice(tenant.id, record.voice_id)
    ctx.voices.forget(tenant.id, record.voice_id)
    return VoiceDeleted(id=record.voice_id)


def builtin_entry(voice: Voice) -> VoiceEntry:
    return VoiceEntry(
        id=voice.id,
        name=voice.name,
        kind="builtin",
        engine=voice.engine,
        version=voice.version,
        language=voice.language,
    )


def cloned_entry(record: VoiceRecord) -> VoiceEntry:
    return VoiceEntry(
        id=record.voice_id,
        name=record.name,
        kind="cloned",
        engine=record.engine,
        version=record.version,
        language=record.language,
        description=record.description,
        ready=record.latents_object_key is not None,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def voice_language(ctx: WorkerContext, engine: Engine, tenant: Tenant, voice_id: str) -> str | None:
    """The language a voice was made for (None: not said), for a preview that names none."""
    if is_voice_id(voice_id):
        return ctx.tenants.get_voice(tenant.id, voice_id).language
    return ctx.voices.resolve(tenant, engine, voice_id).language


def _check_room(ctx: WorkerContext, tenant: Tenant) -> None:
    """A cheap look before the GPU pass; ``create_voice`` enforces the limit atomically."""
    limit = tenant.limits.max_voices
    if limit is not None:
        count = len(ctx.tenants.list_voices(tenant.id))
        if count >= limit:
            raise voice_limit_reached(count, limit)


def _describe(event: JobEvent, record: VoiceRecord) -> None:
    event.voice = record.voice_id
    event.voice_version = record.version
    event.engine = record.engine


def _object_keys(record: VoiceRecord) -> list[str]:
    return [
        key for key in (record.reference_object_key, record.latents_object_key) if key is not None
    ]


def _undo_create(ctx: WorkerContext, record: VoiceRecord, keys: tuple[str, ...]) -> None:
    """Leave nothing of a voice whose objects could not be stored (best effort: what cannot
    be removed stays listed as not ready, for the tenant to delete)."""
    try:
        for key in keys:
            ctx.storage.delete(key)
        ctx.tenants.delete_voice(record.tenant_id, record.voice_id)
    except Exception:  # the original failure is the one to report
        _log.warning("could not remove half-created voice %s", record.voice_id, exc_info=True)
