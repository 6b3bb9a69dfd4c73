"""XTTS-v2's per-language character limits (coqui-tts ``VoiceBpeTokenizer.char_limits``).

XTTS asserts on inputs above 400 tokens; keeping every segment within these character limits is
what keeps it below that, so the splitter packs to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shared.errors import UnsupportedLanguage

XTTS_CHAR_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "en": 250,
        "de": 253,
        "fr": 273,
        "es": 239,
        "it": 213,
        "pt": 203,
        "pl": 224,
        "zh-cn": 82,
        "ar": 166,
        "cs": 186,
        "ru": 182,
        "nl": 251,
        "tr": 226,
        "ja": 71,
        "hu": 224,
        "ko": 95,
        "hi": 150,
    }
)

XTTS_LANGUAGES: frozenset[str] = frozenset(XTTS_CHAR_LIMITS)


def xtts_char_limit(language: str) -> int:
    """Return the segment length limit for an XTTS language code (case-insensitive)."""
    try:
        return XTTS_CHAR_LIMITS[language.lower()]
    except KeyError:
        supported = ", ".join(sorted(XTTS_LANGUAGES))
        raise UnsupportedLanguage(
            f"XTTS-v2 does not support language {language!r}; supported: {supported}"
        ) from None
