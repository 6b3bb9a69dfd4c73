"""A safe parser for the SSML subset the engines can honour: text, pauses and speaking rate.

Parsing goes through ``defusedxml`` with DTDs forbidden, so entity expansion (billion laughs) and
external entities are rejected before anything is expanded or fetched.

Supported elements:

* ``speak`` - required root.
* ``s``, ``p`` - end the current piece; where a ``p`` starts or ends between two pieces of speech
  a ``PARAGRAPH_PAUSE_S`` pause is inserted, unless an explicit ``break`` already separates them.
  No pause is added before the first or after the last speech.
* ``break`` - ``time`` ("500ms", "1.5s", at most ``MAX_BREAK_S``) or ``strength``; a zero break
  adds nothing, adjacent breaks add up.
* ``prosody rate`` - multiplies the rate of its content; nested rates multiply.
* ``sub alias`` - the alias is spoken instead of the content.
* ``metadata``, ``meta``, ``lexicon``, ``desc`` - not spoken.
* anything else (``emphasis``, ``say-as``, ``voice``, ``audio``...) - its content is spoken.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from shared.errors import InvalidSSML
from shared.text.normalize import normalize_text

MIN_RATE = 0.5
MAX_RATE = 2.0
MAX_BREAK_S = 10.0
# One document cannot ask for unbounded silence (10 000 breaks of 10 s is hours of audio).
MAX_TOTAL_PAUSE_S = 300.0
PARAGRAPH_PAUSE_S = 0.4
_MAX_DEPTH = 64

BREAK_STRENGTHS: dict[str, float] = {
    "none": 0.0,
    "x-weak": 0.1,
    "weak": 0.2,
    "medium": 0.4,
    "strong": 0.7,
    "x-strong": 1.2,
}
RATE_NAMES: dict[str, float] = {
    "x-slow": 0.5,
    "slow": 0.75,
    "medium": 1.0,
    "default": 1.0,
    "fast": 1.25,
    "x-fast": 1.75,
}
_SILENT_TAGS = frozenset({"metadata", "meta", "lexicon", "desc"})
_BOUNDARY_TAGS = frozenset({"s", "p"})

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TIME = re.compile(rf"({_NUMBER})\s*(ms|s)")
_PERCENT = re.compile(rf"([+-]?)({_NUMBER})%")
_MULTIPLIER = re.compile(_NUMBER)


@dataclass(frozen=True, slots=True)
class Speech:
    """Text to say at ``rate`` (a multiplier, already clamped to [MIN_RATE, MAX_RATE])."""

    text: str
    rate: float


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


SsmlPiece = Speech | Pause


@dataclass(frozen=True, slots=True)
class _Text:
    raw: str
    rate: float


@dataclass(frozen=True, slots=True)
class _Boundary:
    paragraph: bool


_Event = _Text | Pause | _Boundary


def _local_name(tag: object) -> str:
    # Namespaced tags arrive as "{uri}name"; only the local name matters here.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _parse_time(value: str) -> float:
    match = _TIME.fullmatch(value.strip())
    if match is None:
        raise InvalidSSML(f'<break time="{value}"> is not a duration like "500ms" or "1.5s"')
    seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    return min(seconds, MAX_BREAK_S)


def _break_seconds(element: Element) -> float:
    time = element.get("time")
    if time is not None:
        return _parse_time(time)
    strength = element.get("strength", "medium").strip()
    if strength not in BREAK_STRENGTHS:
        allowed = ", ".join(BREAK_STRENGTHS)
        raise InvalidSSML(f'<break strength="{strength}"> is not one of: {allowed}')
    return BREAK_STRENGTHS[strength]


def _parse_rate(value: str) -> float:
    text = value.strip()
    if text in RATE_NAMES:
        return RATE_NAMES[text]
    rate = math.nan
    if match := _PERCENT.fullmatch(text):
        percent = float(match.group(2))
        # A signed percentage is relative ("+20%" = 1.2); an unsigned one absolute ("80%" = 0.8).
        rate = {"+": 1 + percent / 100, "-": 1 - percent / 100, "": percent / 100}[match.group(1)]
    elif _MULTIPLIER.fullmatch(text):
        rate = float(text)
    if not (math.isfinite(rate) and rate > 0):
        raise InvalidSSML(
            f'<prosody rate="{value}"> must be x-slow, slow, medium, fast, x-fast, '
            'a positive percentage like "80%" or "+20%", or a multiplier like "1.2"'
        )
    return rate


def clamp_rate(rate: float) -> float:
    """A speaking rate within what both engines render acceptably."""
    return min(max(rate, MIN_RATE), MAX_RATE)


def _events(element: Element, rate: float, depth: int) -> Iterator[_Event]:
    if depth > _MAX_DEPTH:
        raise InvalidSSML(f"SSML is nested more than {_MAX_DEPTH} elements deep")
    tag = _local_name(element.tag)
    if tag == "break":
        seconds = _break_seconds(element)
        if seconds > 0:
            yield Pause(seconds)
        return
    if tag == "sub":
        alias = element.get("alias")
        if alias is None:
            raise InvalidSSML('<sub> needs an alias attribute, e.g. <sub alias="World Wide Web">')
        yield _Text(alias, clamp_rate(rate))
        return
    if tag in _SILENT_TAGS:
        return
    if tag == "prosody" and (value := element.get("rate")) is not None:
        rate *= _parse_rate(value)
    if tag in _BOUNDARY_TAGS:
        yield _Boundary(paragraph=tag == "p")
    if element.text:
        yield _Text(element.text, clamp_rate(rate))
    for child in element:
        yield from _events(child, rate, depth + 1)
        if child.tail:
            yield _Text(child.tail, clamp_rate(rate))
    if tag in _BOUNDARY_TAGS:
        yield _Boundary(paragraph=tag == "p")


def _assemble(events: Iterator[_Event]) -> list[SsmlPiece]:
    """Merge same-rate text, drop what is not speakable, place paragraph pauses, sum pauses."""
    pieces: list[SsmlPiece] = []
    raw: list[str] = []
    rate = 0.0
    paragraph = False

    def flush() -> None:
        if raw and (text := normalize_text("".join(raw))):
            pieces.append(Speech(text, rate))
        raw.clear()

    for event in events:
        if isinstance(event, _Text):
            if raw and (event.rate == rate or not normalize_text(event.raw)):
                # Unspeakable text at another rate (e.g. the space between two prosody
                # elements) still separates words, so it joins the current piece.
                raw.append(event.raw)
                continue
            if not normalize_text(event.raw):
                continue
            flush()
            if paragraph and pieces and isinstance(pieces[-1], Speech):
                pieces.append(Pause(PARAGRAPH_PAUSE_S))
            paragraph = False
            raw.append(event.raw)
            rate = event.rate
        elif isinstance(event, Pause):
            flush()
            paragraph = False
            if pieces and isinstance(pieces[-1], Pause):
                pieces[-1] = Pause(pieces[-1].seconds + event.seconds)
            else:
                pieces.append(event)
        else:
            flush()
            paragraph = paragraph or event.paragraph
    flush()
    return pieces


def parse_ssml(ssml: str) -> list[SsmlPiece]:
    """Parse an SSML document into speech and pause pieces; any problem raises InvalidSSML."""
    try:
        root = fromstring(ssml, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidSSML(
            "SSML must not contain a DTD, entity declarations or external references"
        ) from exc
    except ParseError as exc:
        raise InvalidSSML(f"SSML is not well-formed XML: {exc}") from exc
    if _local_name(root.tag) != "speak":
        raise InvalidSSML(f"SSML root element must be <speak>, not <{_local_name(root.tag)}>")
    pieces = _assemble(_events(root, 1.0, 0))
    total_pause = sum(piece.seconds for piece in pieces if isinstance(piece, Pause))
    if total_pause > MAX_TOTAL_PAUSE_S:
        raise InvalidSSML(
            f"SSML breaks add up to {total_pause:.1f} s; at most {MAX_TOTAL_PAUSE_S:.0f} s allowed"
        )
    return pieces
