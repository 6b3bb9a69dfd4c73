"""Vendor TTS APIs behind the engine protocol: ElevenLabs, OpenAI speech, Deepgram Aura.

Each asks its vendor for raw PCM16 and yields float32 as the bytes arrive; keys, voices and
models come from configuration (``vendor_configs``). One call is one attempt: a failure is a
``VendorError`` that says whether a retry may help and when, for the failover layer above.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.engines.vendors.config import VendorConfig, vendor_configs
from shared.engines.vendors.deepgram import DeepgramAuraEngine
from shared.engines.vendors.elevenlabs import ElevenLabsEngine
from shared.engines.vendors.engine import VendorEngine
from shared.engines.vendors.errors import VendorError, VendorErrorKind
from shared.engines.vendors.openai_speech import OpenAISpeechEngine
from shared.errors import EngineUnavailable

_ENGINES: dict[str, type[VendorEngine]] = {
    engine.name: engine for engine in (ElevenLabsEngine, OpenAISpeechEngine, DeepgramAuraEngine)
}
VENDOR_KINDS: tuple[str, ...] = tuple(_ENGINES)

__all__ = [
    "VENDOR_KINDS",
    "DeepgramAuraEngine",
    "ElevenLabsEngine",
    "OpenAISpeechEngine",
    "VendorConfig",
    "VendorEngine",
    "VendorError",
    "VendorErrorKind",
    "load_vendor_engine",
    "vendor_configs",
]


def load_vendor_engine(kind: str, configs: Mapping[str, VendorConfig] | None) -> VendorEngine:
    """The vendor engine ``kind`` names, from its entry in ``configs`` (``vendor_configs``);
    ``EngineUnavailable`` naming the variable when its key is unset."""
    engine = _ENGINES.get(kind)
    if engine is None:
        raise EngineUnavailable(f"no vendor engine {kind!r}: use one of {', '.join(VENDOR_KINDS)}")
    config = (configs or {}).get(kind)
    if config is None:
        raise EngineUnavailable(
            f"the {kind} engine has no configuration: load it with vendor_configs(settings)"
        )
    return engine(config)
