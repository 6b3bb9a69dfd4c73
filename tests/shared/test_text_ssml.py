from __future__ import annotations

import math
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInput, InvalidSSML
from shared.text.normalize import normalize_text
from shared.text.plan import Silence, SpeechSegment, plan_ssml, plan_text, spoken_chars
from shared.text.ssml import PARAGRAPH_PAUSE_S, Pause, Speech, parse_ssml

SSML_NS = "http://www.w3.org/2001/10/synthesis"


def test_plain_text_in_speak_is_one_normalized_piece() -> None:
    assert parse_ssml("<speak>  Hello,\n  \u201cworld\u201d  </speak>") == [
        Speech('Hello, "world"', 1.0)
    ]


# Characters XML 1.0 allows in a document.
_xml_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\ufffe\uffff").filter(
    lambda char: char in "\t\n\r" or ord(char) >= 0x20
)


@settings(max_examples=300, deadline=None)
@given(st.text(_xml_chars))
def test_escaped_text_round_trips_as_one_normalized_piece(text: str) -> None:
    expected = [Speech(normalize_text(text), 1.0)] if normalize_text(text) else []
    assert parse_ssml(f"<speak>{escape(text)}</speak>") == expected


def test_root_must_be_speak() -> None:
    with pytest.raises(InvalidSSML, match="<speak>"):
        parse_ssml("<voice>Hello</voice>")


def test_namespaced_tags_work() -> None:
    ssml = (
        f'<speak xmlns="{SSML_NS}" version="1.1"><s>One.</s>'
        '<break time="1s"/><prosody rate="slow">Two.</prosody></speak>'
    )
    assert parse_ssml(ssml) == [Speech("One.", 1.0), Pause(1.0), Speech("Two.", 0.75)]


def test_prefixed_namespace_tags_work() -> None:
    ssml = f'<x:speak xmlns:x="{SSML_NS}">A<x:break time="200ms"/>B</x:speak>'
    assert parse_ssml(ssml) == [Speech("A", 1.0), Pause(0.2), Speech("B", 1.0)]


def test_sentence_tags_end_the_current_piece() -> None:
    assert parse_ssml("<speak><s>One</s><s>Two</s>Three</speak>") == [
        Speech("One", 1.0),
        Speech("Two", 1.0),
        Speech("Three", 1.0),
    ]


def test_paragraphs_are_separated_by_a_short_pause_only_between_speech() -> None:
    ssml = "<speak><p>First.</p>\n<p>Second.</p></speak>"
    assert parse_ssml(ssml) == [
        Speech("First.", 1.0),
        Pause(PARAGRAPH_PAUSE_S),
        Speech("Second.", 1.0),
    ]


def test_explicit_break_between_paragraphs_replaces_the_paragraph_pause() -> None:
    ssml = '<speak><p>First.</p><break time="2s"/><p>Second.</p></speak>'
    assert parse_ssml(ssml) == [Speech("First.", 1.0), Pause(2.0), Speech("Second.", 1.0)]


@pytest.mark.parametrize(
    ("attributes", "seconds"),
    [
        ('time="500ms"', 0.5),
        ('time="1.5s"', 1.5),
        ('time=" 250 ms "', 0.25),
        ('time="60s"', 10.0),
        ('strength="x-weak"', 0.1),
        ('strength="weak"', 0.2),
        ('strength="medium"', 0.4),
        ('strength="strong"', 0.7),
        ('strength="x-strong"', 1.2),
        ("", 0.4),
        ('time="300ms" strength="x-strong"', 0.3),
    ],
)
def test_break_durations(attributes: str, seconds: float) -> None:
    assert parse_ssml(f"<speak>A<break {attributes}/>B</speak>") == [
        Speech("A", 1.0),
        Pause(seconds),
        Speech("B", 1.0),
    ]


@pytest.mark.parametrize("attributes", ['strength="none"', 'time="0ms"'])
def test_zero_length_break_adds_no_pause(attributes: str) -> None:
    assert parse_ssml(f"<speak>A <break {attributes}/>B</speak>") == [Speech("A B", 1.0)]


def test_consecutive_breaks_add_up() -> None:
    ssml = '<speak>A<break time="1s"/><break time="500ms"/>B</speak>'
    assert parse_ssml(ssml) == [Speech("A", 1.0), Pause(1.5), Speech("B", 1.0)]


@pytest.mark.parametrize(
    "attributes",
    ['time="abc"', 'time="10"', 'time="-1s"', 'time="1h"', 'strength="loud"'],
)
def test_bad_break_value_is_invalid_ssml(attributes: str) -> None:
    with pytest.raises(InvalidSSML, match="break"):
        parse_ssml(f"<speak>A<break {attributes}/>B</speak>")


def test_total_break_time_is_bounded() -> None:
    with pytest.raises(InvalidSSML, match="breaks add up"):
        parse_ssml("<speak>A" + '<break time="10s"/>' * 31 + "</speak>")


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("x-slow", 0.5),
        ("slow", 0.75),
        ("medium", 1.0),
        ("fast", 1.25),
        ("x-fast", 1.75),
        ("80%", 0.8),
        ("150%", 1.5),
        ("+20%", 1.2),
        ("-20%", 0.8),
        ("1.2", 1.2),
        ("10", 2.0),
        ("10%", 0.5),
    ],
)
def test_prosody_rate_values_are_parsed_and_clamped(rate: str, expected: float) -> None:
    ssml = f'<speak><prosody rate="{rate}">word</prosody></speak>'
    assert parse_ssml(ssml) == [Speech("word", pytest.approx(expected))]


def test_nested_prosody_rates_multiply() -> None:
    ssml = (
        '<speak><prosody rate="fast">fast <prosody rate="120%">faster</prosody> '
        "fast again</prosody> normal</speak>"
    )
    assert parse_ssml(ssml) == [
        Speech("fast", 1.25),
        Speech("faster", pytest.approx(1.5)),
        Speech("fast again", 1.25),
        Speech("normal", 1.0),
    ]


def test_prosody_without_rate_keeps_the_rate() -> None:
    assert parse_ssml('<speak>A <prosody pitch="high">B</prosody> C</speak>') == [
        Speech("A B C", 1.0)
    ]


@pytest.mark.parametrize("rate", ["0%", "-100%", "0", "quick", "1.2x", "", "-1.5"])
def test_bad_prosody_rate_is_invalid_ssml(rate: str) -> None:
    with pytest.raises(InvalidSSML, match="prosody"):
        parse_ssml(f'<speak><prosody rate="{rate}">x</prosody></speak>')


def test_sub_speaks_the_alias_instead_of_its_content() -> None:
    ssml = '<speak>The <sub alias="World Wide Web">WWW</sub> is big.</speak>'
    assert parse_ssml(ssml) == [Speech("The World Wide Web is big.", 1.0)]


def test_sub_without_alias_is_invalid_ssml() -> None:
    with pytest.raises(InvalidSSML, match="alias"):
        parse_ssml("<speak><sub>WWW</sub></speak>")


@pytest.mark.parametrize(
    "markup",
    [
        '<emphasis level="strong">very</emphasis>',
        '<say-as interpret-as="characters">very</say-as>',
        '<voice name="x">very</voice>',
        '<audio src="https://example.com/a.mp3">very</audio>',
        "<unknown><nested>very</nested></unknown>",
    ],
)
def test_unknown_tags_keep_their_text(markup: str) -> None:
    assert parse_ssml(f"<speak>It is {markup} good.</speak>") == [Speech("It is very good.", 1.0)]


def test_children_of_unknown_tags_are_processed() -> None:
    ssml = '<speak><voice name="x">A<break time="1s"/><sub alias="B">b</sub></voice></speak>'
    assert parse_ssml(ssml) == [Speech("A", 1.0), Pause(1.0), Speech("B", 1.0)]


def test_metadata_is_not_spoken() -> None:
    ssml = "<speak><metadata>secret</metadata>Hi<audio src='a.mp3'><desc>d</desc></audio></speak>"
    assert parse_ssml(ssml) == [Speech("Hi", 1.0)]


def test_comments_and_cdata() -> None:
    assert parse_ssml("<speak>A <!-- hidden --><![CDATA[B & C]]></speak>") == [
        Speech("A B & C", 1.0)
    ]


def test_same_rate_pieces_merge_across_inline_tags_but_not_across_rates() -> None:
    ssml = (
        '<speak>One <prosody rate="slow">two</prosody> <prosody rate="75%">three</prosody>'
        "<emphasis> four</emphasis></speak>"
    )
    assert parse_ssml(ssml) == [
        Speech("One", 1.0),
        Speech("two three", 0.75),
        Speech("four", 1.0),
    ]


def test_empty_pieces_are_dropped() -> None:
    assert parse_ssml("<speak> <s> </s><p>\u200b</p>Hi</speak>") == [Speech("Hi", 1.0)]


@pytest.mark.parametrize(
    "ssml",
    ["<speak>unclosed", "<speak><s>A</p></speak>", "", "plain text", "<speak>&nbsp;</speak>"],
)
def test_malformed_xml_is_invalid_ssml_with_position(ssml: str) -> None:
    with pytest.raises(InvalidSSML, match=r"not well-formed XML.*line 1, column"):
        parse_ssml(ssml)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<speak>&lol4;</speak>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<speak>&xxe;</speak>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE speak SYSTEM "http://example.com/evil.dtd">
<speak>hi</speak>"""


@pytest.mark.parametrize(
    "ssml", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD], ids=["laughs", "xxe", "dtd"]
)
def test_entity_and_dtd_payloads_are_rejected_not_expanded(ssml: str) -> None:
    with pytest.raises(InvalidSSML, match="DTD") as info:
        parse_ssml(ssml)
    assert "lol" not in str(info.value)
    assert "root" not in str(info.value)


def test_deep_nesting_is_invalid_ssml() -> None:
    with pytest.raises(InvalidSSML, match="nested"):
        parse_ssml("<speak>" + "<emphasis>" * 200 + "x" + "</emphasis>" * 200 + "</speak>")


def test_plan_ssml_multiplies_speed_by_rate_and_turns_breaks_into_silence() -> None:
    ssml = (
        '<speak>Hello there. How are you?<break time="750ms"/>'
        '<prosody rate="fast">Quick one.</prosody><prosody rate="x-fast">Too fast.</prosody>'
        "</speak>"
    )
    assert plan_ssml(ssml, limit=250, speed=1.2) == [
        SpeechSegment("Hello there.", 1.2),
        SpeechSegment("How are you?", 1.2),
        Silence(0.75),
        SpeechSegment("Quick one.", 1.5),
        SpeechSegment("Too fast.", 2.0),
    ]


def test_plan_ssml_splits_long_pieces_within_limit() -> None:
    ssml = "<speak>" + "word " * 100 + "</speak>"
    plan = plan_ssml(ssml, limit=50, speed=1.0)
    assert all(isinstance(item, SpeechSegment) and len(item.text) <= 50 for item in plan)
    assert spoken_chars(plan) == sum(len(item.text) for item in plan) > 400


def test_plan_ssml_with_only_breaks_has_nothing_to_speak() -> None:
    with pytest.raises(InvalidInput, match="nothing to speak"):
        plan_ssml('<speak><break time="1s"/><s> </s></speak>', limit=250, speed=1.0)


def test_plan_text_normalizes_then_splits() -> None:
    plan = plan_text("  \u201cHello,\u201d  world!\n\nBye\u2014now. ", limit=250, speed=0.9)
    assert plan == [SpeechSegment('"Hello," world!', 0.9), SpeechSegment("Bye - now.", 0.9)]
    assert spoken_chars(plan) == len('"Hello," world!') + len("Bye - now.")


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200d\n"])
def test_plan_text_with_nothing_speakable_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="nothing to speak"):
        plan_text(text, limit=250, speed=1.0)


@pytest.mark.parametrize(("speed", "expected"), [(0.1, 0.5), (1.3, 1.3), (5.0, 2.0)])
def test_plan_speed_is_clamped_to_engine_range(speed: float, expected: float) -> None:
    assert plan_text("Hi.", limit=250, speed=speed) == [SpeechSegment("Hi.", expected)]


@pytest.mark.parametrize("speed", [math.nan, math.inf])
def test_plan_speed_must_be_finite(speed: float) -> None:
    with pytest.raises(InvalidInput, match="speed"):
        plan_ssml("<speak>Hi.</speak>", limit=250, speed=speed)


def test_spoken_chars_ignores_silences() -> None:
    plan = [SpeechSegment("abc", 1.0), Silence(2.0), SpeechSegment("de", 1.0)]
    assert spoken_chars(plan) == 5
