"""What one vendor engine needs to run, taken from the settings once, so engines take values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydantic import AliasChoices, SecretStr

if TYPE_CHECKING:
    from shared.config import Settings


@dataclass(frozen=True, slots=True)
class VendorConfig:
    """``key_env`` names the variables that set ``api_key``, for the error when it is unset.
    ``default_voice`` is a name in ``voices`` (tenant id -> vendor voice id) or else a vendor
    voice id offered under its own id. ``model``: the vendor's model id where it takes one
    (Deepgram's model is the voice). ``pcm_rate``: where the vendor offers a choice (ElevenLabs)."""

    api_key: SecretStr | None = field(repr=False)
    key_env: str
    base_url: str
    default_voice: str
    voices: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    model: str | None = None
    pcm_rate: int | None = None
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_concurrent: int = 8


def vendor_configs(settings: Settings) -> dict[str, VendorConfig]:
    """Each vendor engine's configuration, by engine name; a missing key is reported when that
    engine is loaded, not here, so a worker that runs none of them needs no keys."""
    return {
        "elevenlabs": _config(
            settings,
            "elevenlabs",
            "elevenlabs_api_key",
            model=settings.elevenlabs_model,
            pcm_rate=settings.elevenlabs_pcm_rate,
        ),
        "openai": _config(
            settings, "openai_speech", "openai_api_key", model=settings.openai_speech_model
        ),
        "deepgram": _config(settings, "deepgram", "deepgram_api_key"),
    }


def _config(
    settings: Settings,
    prefix: str,
    key_field: str,
    *,
    model: str | None = None,
    pcm_rate: int | None = None,
) -> VendorConfig:
    """The fields every vendor has, named ``<prefix>_base_url``, ``_voice``, ``_voices``."""
    return VendorConfig(
        api_key=getattr(settings, key_field),
        key_env=_key_names(settings, key_field),
        base_url=getattr(settings, f"{prefix}_base_url"),
        default_voice=getattr(settings, f"{prefix}_voice"),
        voices=MappingProxyType(dict(getattr(settings, f"{prefix}_voices"))),
        model=model,
        pcm_rate=pcm_rate,
        connect_timeout_s=settings.vendor_connect_timeout_s,
        read_timeout_s=settings.vendor_read_timeout_s,
        max_concurrent=settings.vendor_max_concurrent,
    )


def _key_names(settings: Settings, field_name: str) -> str:
    """Every variable that sets ``field_name``, for an error a person reads: "A or B"."""
    alias = type(settings).model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return " or ".join(str(choice) for choice in alias.choices)
