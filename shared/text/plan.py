"""Turn a request's text or SSML into what the engine loop consumes: segments and silences.

Every ``SpeechSegment`` is within the engine's per-call character limit and carries its own
speed, so handlers neither split nor parse anything themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.errors import InvalidInput
from shared.text.normalize import normalize_text
from shared.text.split import split_segments
from shared.text.ssml import Pause, clamp_rate, parse_ssml


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    text: str
    speed: float


@dataclass(frozen=True, slots=True)
class Silence:
    seconds: float


PlanItem = SpeechSegment | Silence


def _speed(speed: float) -> float:
    """Clamp to the range both engines render acceptably (the same range SSML rates use)."""
    if not math.isfinite(speed):
        raise InvalidInput(f"speed must be a finite number, got {speed}")
    return clamp_rate(speed)


# A letter or digit in any script: a segment without one ("...", "?!") has nothing to say, and
# engines answer it with silence (Piper: 0.0 s), which must not be charged as speech.
_SPEAKABLE = re.compile(r"[^\W_]")


def _segments(text: str, limit: int, speed: float) -> list[SpeechSegment]:
    return [
        SpeechSegment(part, speed)
        for part in split_segments(normalize_text(text), limit)
        if _SPEAKABLE.search(part)
    ]


def _require_speech(plan: list[PlanItem], field: str, what: str) -> list[PlanItem]:
    if not any(isinstance(item, SpeechSegment) for item in plan):
        raise InvalidInput(f"nothing to speak: {what}", field=field)
    return plan


def plan_text(text: str, *, limit: int, speed: float) -> list[PlanItem]:
    """Plan plain text: normalize, then split into segments of at most ``limit`` characters."""
    plan: list[PlanItem] = [*_segments(text, limit, _speed(speed))]
    return _require_speech(plan, "text", "the text has no letters or digits to speak")


def plan_ssml(ssml: str, *, limit: int, speed: float) -> list[PlanItem]:
    """Plan SSML: each piece's rate multiplies ``speed`` (clamped); breaks become silences."""
    base = _speed(speed)
    plan: list[PlanItem] = []
    for piece in parse_ssml(ssml):
        if isinstance(piece, Pause):
            plan.append(Silence(piece.seconds))
        else:
            plan.extend(_segments(piece.text, limit, _speed(base * piece.rate)))
    return _require_speech(plan, "ssml", "the SSML contains no text, only breaks or markup")


def spoken_chars(plan: Iterable[PlanItem]) -> int:
    """Characters the engine will synthesize (what usage is metered on)."""
    return sum(len(item.text) for item in plan if isinstance(item, SpeechSegment))
