"""Cut normalized text into segments an engine can say in one call.

One sentence per segment where it fits, so a stream can start speaking after the first sentence.
Longer sentences break at clause boundaries, then at spaces, then anywhere (CJK text has no
spaces); their pieces are packed greedily so no needlessly tiny fragments are spoken.

Everything works on ``(start, end)`` spans of the input, stripped at both ends, so segments are
slices of the input: nothing is lost or reordered, and the packing is linear in the text length.
"""

from __future__ import annotations

import re
import unicodedata

_Span = tuple[int, int]

# Sentence stops: Latin, CJK (full and half width), Devanagari dandas, Arabic/Urdu, Armenian,
# Ethiopic, Myanmar, Khmer.
_STOPS = (
    ".!?\u203c\u2047\u2048\u2049\u3002\uff61\uff0e\uff01\uff1f"
    "\u0964\u0965\u061f\u06d4\u0589\u1362\u1367\u1368\u104b\u17d4"
)
# Quotes and brackets that belong to the sentence they close.
_CLOSERS = (
    "\"'\u2019\u201d\u00bb\u203a)\\]}"
    "\u300d\u300f\uff09\uff3d\uff5d\u3011\u3015\u3009\u300b\u3017\u3019\u301b"
)
_SENTENCE_END = re.compile(f"[{_STOPS}]+[{_CLOSERS}]*")
_CLAUSE_END = re.compile(
    f"[,;:\u3001\uff0c\uff1b\uff1a\u060c\u061b]+[{_CLOSERS}]*|(?<=\\s)-+(?=\\s)"
)
_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]")
# Longest run of combining marks kept together when a word must be hard split.
_MAX_CLUSTER = 8

# A period after these is not the end of a sentence ("Dr. Smith").
_ABBREVIATION = re.compile(
    r"(?<!\S)(?:mr|mrs|ms|dr|prof|sr|jr|st|mt|vs|e\.g|i\.e|cf|approx)\.", re.IGNORECASE
)


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _boundary_after(text: str, match: re.Match[str]) -> bool:
    """Whether a stop or clause mark ends its unit: it must be followed by a space or the end,
    unless it or the next character is East Asian wide (CJK needs no space; "3.5" stays whole).
    """
    end = match.end()
    if end == len(text) or text[end].isspace():
        return True
    return _is_wide(text[end]) or any(_is_wide(char) for char in match.group())


def _strip(text: str, start: int, end: int) -> _Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cut(text: str, start: int, end: int, cuts: list[int]) -> list[_Span]:
    """Spans between ``cuts`` within ``[start, end)``, stripped, empty ones dropped."""
    spans = []
    for cut in [*cuts, end]:
        span = _strip(text, start, cut)
        if span[0] < span[1]:
            spans.append(span)
        start = cut
    return spans


def _sentences(text: str) -> list[_Span]:
    # Positions of periods that end an abbreviation rather than a sentence.
    abbreviations = {match.end() - 1 for match in _ABBREVIATION.finditer(text)}
    cuts = [
        match.end()
        for match in _SENTENCE_END.finditer(text)
        if _boundary_after(text, match)
        and not (match.start() in abbreviations and match.end() - match.start() == 1)
    ]
    return _cut(text, 0, len(text), cuts)


def _is_mark(char: str) -> bool:
    return unicodedata.category(char) in ("Mn", "Mc", "Me")


def _hard_split(text: str, start: int, end: int, limit: int) -> list[_Span]:
    """Fixed-size pieces of a space-free run, moving a cut back (a little) so that a combining
    mark stays with its base character."""
    spans = []
    while end - start > limit:
        cut = start + limit
        floor = max(start + 1, cut - _MAX_CLUSTER)
        while cut > floor and _is_mark(text[cut]):
            cut -= 1
        if _is_mark(text[cut]):
            cut = start + limit
        spans.append((start, cut))
        start = cut
    spans.append((start, end))
    return spans


def _words(text: str, start: int, end: int, limit: int) -> list[_Span]:
    spans: list[_Span] = []
    for match in _WORD.finditer(text, start, end):
        spans.extend(_hard_split(text, match.start(), match.end(), limit))
    return spans


def _clauses(text: str, start: int, end: int, limit: int) -> list[_Span]:
    cuts = [
        match.end()
        for match in _CLAUSE_END.finditer(text, start, end)
        if match.end() < end and _boundary_after(text, match)
    ]
    spans: list[_Span] = []
    for clause in _cut(text, start, end, cuts):
        if clause[1] - clause[0] <= limit:
            spans.append(clause)
        else:
            spans.extend(_words(text, *clause, limit))
    return spans


def _pack(pieces: list[_Span], limit: int) -> list[_Span]:
    """Greedily join consecutive pieces (each within ``limit``) while the result stays within it."""
    packed = [pieces[0]]
    for start, end in pieces[1:]:
        if end - packed[-1][0] <= limit:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    return packed


def _has_word(text: str, span: _Span) -> bool:
    return _ALNUM.search(text, *span) is not None


def _attach_punctuation(text: str, spans: list[_Span], limit: int) -> list[_Span]:
    """Join punctuation-only segments ("...", a stray quote) to a neighbour where it fits: said
    alone they make XTTS babble."""
    result: list[_Span] = []
    wordy: list[bool] = []
    for span in spans:
        has_word = _has_word(text, span)
        if result and span[1] - result[-1][0] <= limit and not (has_word and wordy[-1]):
            result[-1] = (result[-1][0], span[1])
            wordy[-1] = wordy[-1] or has_word
        else:
            result.append(span)
            wordy.append(has_word)
    return result


def split_segments(text: str, limit: int) -> list[str]:
    """Split normalized ``text`` into stripped, non-empty segments of at most ``limit`` chars.

    The segments' non-whitespace characters, concatenated, are exactly those of ``text``.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    spans: list[_Span] = []
    for start, end in _sentences(text):
        if end - start <= limit:
            spans.append((start, end))
        else:
            spans.extend(_pack(_clauses(text, start, end, limit), limit))
    return [text[start:end] for start, end in _attach_punctuation(text, spans, limit)]
