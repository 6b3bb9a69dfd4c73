"""The call flow: what each webhook answers, given a checked ``Webhook``.

Every branch ends in TwiML the caller can hear: the worker's audio when it is ready in time,
else ``<Say>`` of the same words (the synthesis left running, so the phrase is cached for the
next caller); with the worker down, the business's fallback text and then the words; with the
responder down, the fallback text alone. Nothing here waits longer than Twilio allows.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from edge.deadline import wait_for_worker
from edge.events import ResponseType
from edge.responder import MAX_REPLY_CHARS, CallerTurn, Reply, ResponderFailed
from edge.state import EdgeState
from edge.twiml import listen, spoken, streamed
from edge.webhook import Refused, Webhook

# Twilio gives a webhook 15 s (then error 11205); the edge answers well before, whatever the
# responder and worker settings add up to.
WEBHOOK_BUDGET_S = 12.0


@dataclass(frozen=True, slots=True)
class Answer:
    twiml: VoiceResponse
    response_type: ResponseType
    worker_latency_ms: float | None = None
    fallback_reason: str | None = None


async def voice(call: Webhook, edge: EdgeState) -> Answer:
    """An incoming call: the greeting from the worker's cache (a lookup, never a synthesis),
    else said by Twilio while the worker warms it for the next caller."""
    greeting = call.config.greeting
    speech = edge.speech(call.business, text=greeting)
    lookup = asyncio.create_task(edge.worker.cached_url(speech))
    outcome = await wait_for_worker(lookup, edge.settings.config.cache_lookup_ms / 1000)
    lookup.cancel()  # a lookup that came too late is worth nothing
    gather_url = edge.url(call.business, "gather")
    if outcome.value is not None:
        return Answer(listen(gather_url, play=outcome.value), "play", outcome.latency_ms)
    reason = outcome.fallback_reason
    if reason is None:  # a plain miss, not a worker in trouble: warm it, once at a time
        edge.background.once(f"warm:{call.business}", lambda: edge.worker.warm(speech))
        reason = "not_cached"
    return Answer(listen(gather_url, say=greeting), "say", outcome.latency_ms, reason)


async def gather(call: Webhook, edge: EdgeState) -> Answer:
    """A caller's turn: the business's responder says what to answer, then the mode says how."""
    started = time.perf_counter()
    gather_url = edge.url(call.business, "gather")
    words = (call.form.get("SpeechResult") or "").strip()
    if not words:  # Twilio heard nothing (actionOnEmptyResult): listen again
        return Answer(listen(gather_url), "gather")
    caller = CallerTurn(
        business=call.business,
        call_sid=call.call_sid,
        from_=call.form.get("From"),
        to=call.form.get("To"),
        speech=words,
        confidence=_confidence(call.form.get("Confidence")),
    )
    timeout_s = edge.settings.config.responder_timeout_ms / 1000
    try:
        reply = await edge.responder.reply(call.config.responder_url, caller, timeout_s=timeout_s)
    except ResponderFailed as exc:
        fallback = call.config.fallback_text
        return Answer(listen(gather_url, say=fallback), "say", fallback_reason=exc.reason)
    if call.config.mode == "stream":
        return _stream(call, edge, reply)
    left_s = WEBHOOK_BUDGET_S - (time.perf_counter() - started)
    return await _play(call, edge, reply, wait_s=left_s, gather_url=gather_url)


async def carry_on(call: Webhook, edge: EdgeState) -> Answer:
    """After a streamed turn (``continue``): listen again, first saying the reply when the
    stream failed or never ran. A turn this instance does not know just listens again."""
    gather_url = edge.url(call.business, "gather")
    turn_id = call.query.get("turn", "")
    turn = edge.turns.take(call.business, turn_id) if turn_id else None
    if turn is None or turn.heard():
        return Answer(listen(gather_url), "gather")
    reason = turn.fallback_reason or "stream_not_started"
    return Answer(listen(gather_url, say=turn.reply.words()), "say", fallback_reason=reason)


async def say(call: Webhook, edge: EdgeState) -> Answer:
    """Text an app already has (form or JSON field ``text``), as TwiML under the deadline."""
    text = call.json.get("text") if call.json is not None else call.form.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Refused(400, 'give the words to say as the field "text"')
    if len(text) > MAX_REPLY_CHARS:
        raise Refused(400, f'"text" is over {MAX_REPLY_CHARS} characters')
    return await _play(call, edge, Reply(text=text), wait_s=WEBHOOK_BUDGET_S, gather_url=None)


async def _play(
    call: Webhook, edge: EdgeState, reply: Reply, *, wait_s: float, gather_url: str | None
) -> Answer:
    speech = edge.speech(call.business, reply=reply)
    synthesis = asyncio.create_task(edge.worker.synthesize_url(speech))
    deadline_s = min(edge.settings.config.deadline_ms / 1000, wait_s)
    outcome = await wait_for_worker(synthesis, deadline_s)
    if outcome.fallback_reason == "deadline":
        edge.background.keep(synthesis)  # left to finish: the next caller gets it cached
    if outcome.value is not None:
        play, say_text, kind = outcome.value, None, "play"
    elif outcome.fallback_reason == "deadline":  # still coming: say the same words now
        play, say_text, kind = None, reply.words(), "say"
    else:  # the worker is down or refused: the business's fallback, then its answer
        play, say_text, kind = None, f"{call.config.fallback_text} {reply.words()}", "say"
    twiml = (
        spoken(play=play, say=say_text)
        if gather_url is None
        else listen(gather_url, play=play, say=say_text)
    )
    return Answer(twiml, kind, outcome.latency_ms, outcome.fallback_reason)


def _stream(call: Webhook, edge: EdgeState, reply: Reply) -> Answer:
    turn = edge.turns.open(call.business, reply)
    after = f"{edge.url(call.business, 'continue')}?turn={turn.id}"
    twiml = streamed(edge.stream_url(call.business), edge.turns.parameters(turn), after)
    return Answer(twiml, "stream")


def _confidence(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
