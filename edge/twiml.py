"""The TwiML the edge answers with, built with the twilio SDK's ``VoiceResponse`` (which escapes
every value), so a reply text can never break out of its element.

A call is a loop of turns: each answer ends in a ``<Gather>`` whose action is the ``gather``
webhook, with what the caller should hear inside it, so the caller may talk over it (Twilio
stops the prompt as soon as speech starts).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from twilio.twiml.voice_response import VoiceResponse

# Twilio's limit for one <Say>: every text the edge may say (replies, the say route's text) is
# bounded below it where it comes in.
MAX_SAY_CHARS = 4096


def twiml_response(twiml: VoiceResponse) -> Response:
    return Response(str(twiml), media_type="text/xml")


def listen(gather_url: str, *, play: str | None = None, say: str | None = None) -> VoiceResponse:
    """Play ``play`` (a URL) or say ``say``, listening for the caller meanwhile and after."""
    response = VoiceResponse()
    gather = response.gather(
        input="speech", action=gather_url, speech_timeout="auto", action_on_empty_result=True
    )
    if play is not None:
        gather.play(play)
    elif say is not None:
        gather.say(say)
    return response


def spoken(*, play: str | None = None, say: str | None = None) -> VoiceResponse:
    """Just the audio (``say`` route): the app that asked decides what happens after it."""
    response = VoiceResponse()
    if play is not None:
        response.play(play)
    elif say is not None:
        response.say(say)
    return response


def streamed(stream_url: str, parameters: Mapping[str, str], after_url: str) -> VoiceResponse:
    """A reply carried by a Media Stream: Twilio holds the call in ``<Connect>`` until the edge
    closes the socket, then follows the ``<Redirect>`` to carry the call on."""
    response = VoiceResponse()
    stream = response.connect().stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.redirect(after_url, method="POST")
    return response
