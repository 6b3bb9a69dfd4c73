"""Streamed turns: their parameters, signed so only what an edge handed Twilio comes back as a
turn, and the bounded memory ``continue`` reads their outcome from."""

from __future__ import annotations

from pydantic import SecretStr

from edge.responder import Reply
from edge.turns import MAX_PARAMETER_CHARS, Turns

TOKEN = SecretStr("twilio-auth-token")


def test_a_short_reply_travels_in_its_parameters_to_any_instance() -> None:
    here, there = Turns(TOKEN), Turns(TOKEN)
    turn = here.open("acme", Reply(ssml="<speak>Hello <break time='1s'/> there.</speak>"))
    parameters = here.parameters(turn)
    assert parameters["ssml"] == turn.reply.ssml
    assert here.from_parameters("acme", parameters) is turn  # the one whose outcome is kept
    rebuilt = there.from_parameters("acme", parameters)
    assert rebuilt is not None and (rebuilt.id, rebuilt.reply) == (turn.id, turn.reply)


def test_a_long_reply_stays_in_memory_and_only_its_instance_knows_it() -> None:
    here, there = Turns(TOKEN), Turns(TOKEN)
    turn = here.open("acme", Reply(text="word " * MAX_PARAMETER_CHARS))
    parameters = here.parameters(turn)
    assert set(parameters) == {"turn", "sig"}
    assert here.from_parameters("acme", parameters) is turn
    assert there.from_parameters("acme", parameters) is None


def test_parameters_changed_or_moved_are_not_a_turn() -> None:
    turns = Turns(TOKEN)
    turn = turns.open("acme", Reply(text="Your order shipped."))
    parameters = turns.parameters(turn)
    changed = {**parameters, "text": "Something else entirely."}
    assert Turns(TOKEN).from_parameters("acme", changed) is None
    known = turns.from_parameters("acme", changed)  # memory wins: the change is never spoken
    assert known is turn and known.reply.text == "Your order shipped."
    assert turns.from_parameters("other", parameters) is None
    assert Turns(SecretStr("another-account")).from_parameters("acme", parameters) is None
    assert turns.from_parameters("acme", {**parameters, "sig": "ünïcode"}) is None
    assert turns.from_parameters("acme", {}) is None


def test_a_turn_is_taken_once_by_its_business() -> None:
    turns = Turns(TOKEN)
    turn = turns.open("acme", Reply(text="Hello."))
    assert turns.take("other", turn.id) is None
    assert turns.take("acme", turn.id) is turn
    assert turns.take("acme", turn.id) is None


def test_memory_is_bounded_in_count_and_age() -> None:
    now = [0.0]
    turns = Turns(TOKEN, max_turns=2, ttl_s=60, clock=lambda: now[0])
    first, second, third = (turns.open("acme", Reply(text=f"Reply {n}.")) for n in range(3))
    assert turns.take("acme", first.id) is None  # the oldest made room
    now[0] = 61.0
    assert turns.take("acme", second.id) is None and turns.take("acme", third.id) is None
