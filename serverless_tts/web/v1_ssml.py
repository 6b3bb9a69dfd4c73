"""``/v1/ssml/validate``: what a synthesize job would make of an SSML document, without
synthesizing or charging anything. The same bounds as the job contract apply, checked before
the document is parsed."""

from __future__ import annotations

from serverless_tts.web.v1_models import SsmlCheck
from shared.errors import InvalidSSML, TextTooLong
from shared.jobs import JobLimits
from shared.text.ssml import Pause, Speech, parse_ssml


def check_ssml(ssml: str, limits: JobLimits) -> SsmlCheck:
    """The document's pieces; ``InvalidSSML`` with the parser's message, ``TextTooLong``."""
    bound = 2 * limits.max_text_chars  # markup is not spoken: the job contract's SSML bound
    if len(ssml) > bound:
        raise TextTooLong(f"ssml has {len(ssml)} characters; the limit is {bound}")
    pieces = parse_ssml(ssml)
    spoken = sum(len(piece.text) for piece in pieces if isinstance(piece, Speech))
    if spoken == 0:
        raise InvalidSSML("the SSML contains no text to speak, only breaks or markup")
    if spoken > limits.max_text_chars:
        raise TextTooLong(f"{spoken} characters to speak; the limit is {limits.max_text_chars}")
    pauses = sum(piece.seconds for piece in pieces if isinstance(piece, Pause))
    return SsmlCheck(spoken_chars=spoken, pieces=len(pieces), pauses_s=round(pauses, 3))
