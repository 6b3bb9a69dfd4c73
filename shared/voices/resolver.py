"""From a tenant's voice id to the ``Voice`` an engine speaks with.

Today every tenant sees the engine's built-in voices; cloned voices (per tenant, latents stored
once) resolve here too, so handlers ask one place and the engine never looks a voice up by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.engines.base import Engine, Voice
from shared.tenants.base import Tenant


class VoiceResolver:
    def resolve(self, tenant: Tenant | None, engine: Engine, voice_id: str | None) -> Voice:
        """The voice ``voice_id`` names for ``tenant`` on ``engine`` (None: the engine's default);
        ``VoiceNotFound`` when there is none."""
        return engine.voice(voice_id or engine.default_voice)

    def available(self, tenant: Tenant | None, engine: Engine) -> Sequence[Voice]:
        """The voices ``tenant`` may ask for on ``engine``."""
        return engine.voices()
