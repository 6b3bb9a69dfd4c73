"""Canonical form of input text: what the engines read and what the audio cache key hashes.

Equal-sounding inputs should map to one string (so the cache hits), and the function must be
idempotent, because text may pass through it more than once (SSML pieces, then the planner).
"""

from __future__ import annotations

import re
import unicodedata

# Hard-coded (Unicode 14 Cc, Cf, Cs, plus variation selectors) rather than scanned from
# ``unicodedata`` at import: the scan costs ~0.3 s, and a fixed set keeps cache keys stable across
# Python upgrades. Whitespace controls are excluded: they become spaces below.
_INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"  # C0/C1 controls that are not whitespace
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufe00-\ufe0f\ufeff\ufff9-\ufffb"
    "\ud800-\udfff"  # lone surrogates would make the text unencodable as UTF-8
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\U000e0100-\U000e01ef"
    "]"
)

# NFKC would turn the acute accent, often typed as an apostrophe, into space + combining mark.
_BEFORE_NFKC = str.maketrans({"\u00b4": "'"})

_AFTER_NFKC = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2010": "-",
        "\u2012": "-",
        "\u2212": "-",
        "\u2014": " - ",
        "\u2015": " - ",
        "\u2e3a": " - ",
        "\u2e3b": " - ",
        "\u2026": "...",
    }
)

# An en dash (U+2013) between digits is a range ("1990-2000"); elsewhere it separates clauses.
_RANGE_DASH = re.compile(r"(?<=\d)\u2013(?=\d)")
_CLAUSE_DASH = re.compile("\u2013")


def normalize_text(text: str) -> str:
    """Return the canonical form of ``text``: NFKC, ASCII quotes/dashes, single spaces, stripped.

    Letters of every script are kept; only invisible characters (controls, zero-width and
    direction marks, variation selectors, lone surrogates) are removed. Idempotent.
    """
    # Invisible characters go before NFKC so that NFKC composes what they used to separate;
    # otherwise a second pass could compose further and break idempotence.
    text = _INVISIBLE.sub("", text).translate(_BEFORE_NFKC)
    text = unicodedata.normalize("NFKC", text)
    text = _RANGE_DASH.sub("-", text)
    text = _CLAUSE_DASH.sub(" - ", text).translate(_AFTER_NFKC)
    return " ".join(text.split())
