from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import UnsupportedLanguage
from shared.text.limits import XTTS_CHAR_LIMITS, XTTS_LANGUAGES, xtts_char_limit
from shared.text.normalize import normalize_text
from shared.text.split import split_segments

_PUNCTUATION = [
    ".", "!", "?", ",", ";", ":", " - ", "...", "?!", "3.5", "e.g.", "Dr.", '"', "'", ")",
    "\u3002", "\uff01", "\uff1f", "\u3001", "\uff0c", "\u300d", "\u0964", "\u061f", "\u060c",
]  # fmt: skip
_WHITESPACE = [" ", "  ", "\n", "\n\n", "\t", "\u3000", "\u00a0"]

_fragments = st.one_of(
    st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
    st.sampled_from(_PUNCTUATION),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=40),
    st.text(st.characters(min_codepoint=0x3041, max_codepoint=0x3096), min_size=1, max_size=40),
    st.sampled_from(["\u0928\u092e\u0938\u094d\u0924\u0947", "\u0645\u0631\u062d\u0628\u0627"]),
    st.integers(min_value=0, max_value=10**12).map(str),
    st.text("abcdefghij", min_size=50, max_size=700),
    st.sampled_from(_WHITESPACE),
)
_texts = st.lists(_fragments, max_size=80).map("".join)
_limits = st.one_of(
    st.integers(min_value=1, max_value=300), st.sampled_from(sorted(XTTS_CHAR_LIMITS.values()))
)


def _visible(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


@settings(max_examples=400, deadline=None)
@given(text=_texts, limit=_limits)
def test_every_segment_is_nonempty_stripped_and_within_limit(text: str, limit: int) -> None:
    for segment in split_segments(text, limit):
        assert 0 < len(segment) <= limit
        assert segment == segment.strip()


@settings(max_examples=400, deadline=None)
@given(text=_texts, limit=_limits)
def test_no_character_is_lost_or_reordered(text: str, limit: int) -> None:
    assert _visible("".join(split_segments(text, limit))) == _visible(text)


@settings(max_examples=200, deadline=None)
@given(text=_texts, limit=_limits)
def test_segments_are_slices_of_the_input_in_order(text: str, limit: int) -> None:
    position = 0
    for segment in split_segments(text, limit):
        found = text.find(segment, position)
        assert found >= position
        position = found + len(segment)


def test_each_sentence_that_fits_is_its_own_segment() -> None:
    text = "Hello there. How are you? I am fine! Thanks."
    assert split_segments(text, 250) == ["Hello there.", "How are you?", "I am fine!", "Thanks."]


def test_closing_quote_and_bracket_stay_with_their_sentence() -> None:
    text = 'He said "stop." (Then he left.) She stayed.'
    assert split_segments(text, 250) == ['He said "stop."', "(Then he left.)", "She stayed."]


def test_decimal_point_does_not_end_a_sentence() -> None:
    assert split_segments("Pi is about 3.14159 today. Next.", 250) == [
        "Pi is about 3.14159 today.",
        "Next.",
    ]


def test_title_abbreviation_does_not_end_a_sentence() -> None:
    assert split_segments("Dr. Smith met Mr. Jones. They talked.", 250) == [
        "Dr. Smith met Mr. Jones.",
        "They talked.",
    ]


def test_cjk_and_devanagari_stops_end_sentences_without_spaces() -> None:
    assert split_segments("今日は晴れ。明日は雨!本当?", 71) == [
        "今日は晴れ。",
        "明日は雨!",
        "本当?",
    ]
    assert split_segments("नमस्ते। आप कैसे हैं?", 150) == ["नमस्ते।", "आप कैसे हैं?"]


def test_overlong_sentence_breaks_at_clause_boundaries_first() -> None:
    text = "first clause here, second clause here; third clause here"
    assert split_segments(text, 40) == [
        "first clause here, second clause here;",
        "third clause here",
    ]


def test_comma_inside_a_number_is_not_a_clause_boundary() -> None:
    text = "We paid 1,000,000 dollars, gladly"
    assert split_segments(text, 28) == ["We paid 1,000,000 dollars,", "gladly"]


def test_overlong_clause_breaks_at_whitespace_and_packs_words_greedily() -> None:
    text = "one two three four five six seven eight nine ten"
    segments = split_segments(text, 15)
    assert segments == ["one two three", "four five six", "seven eight", "nine ten"]


def test_overlong_word_is_hard_split_within_limit() -> None:
    assert split_segments("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_hard_split_keeps_combining_marks_with_their_base() -> None:
    word = "\u0915\u093f" * 10  # Devanagari "ki" repeated: consonant + vowel sign
    segments = split_segments(word, 5)
    assert [unicodedata.category(s[0]) for s in segments] == ["Lo"] * len(segments)
    assert "".join(segments) == word


def test_punctuation_only_sentence_joins_its_neighbour() -> None:
    assert split_segments("Wait. ... Go on.", 250) == ["Wait. ...", "Go on."]
    assert split_segments("... Go on.", 250) == ["... Go on."]


def test_whitespace_only_text_gives_no_segments() -> None:
    assert split_segments(" \n\t ", 10) == []


def test_limit_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_segments("text", 0)


def test_xtts_limits_cover_its_17_languages() -> None:
    assert len(XTTS_LANGUAGES) == 17
    assert xtts_char_limit("zh-cn") == 82
    assert xtts_char_limit("JA") == 71
    assert xtts_char_limit("hi") == 150


def test_unknown_xtts_language_is_unsupported() -> None:
    with pytest.raises(UnsupportedLanguage, match="'xx'"):
        xtts_char_limit("xx")


def test_ten_thousand_char_english_text_fits_en_limit() -> None:
    sentence = (
        "The quick brown fox, which had been running for hours across the wide and windy plain "
        "under a pale winter sky, finally stopped beside the river; it drank, rested, and "
        "watched the slow water carry leaves and twigs toward the distant sea. "
    )
    text = normalize_text(sentence * (10_000 // len(sentence) + 1))[:10_000]
    limit = xtts_char_limit("en")
    segments = split_segments(text, limit)
    assert all(0 < len(s) <= limit for s in segments)
    assert _visible("".join(segments)) == _visible(text)
    # The 236-char sentence fits the limit, so it stays whole.
    assert segments[0] == sentence.strip()


def test_japanese_text_fits_ja_limit() -> None:
    text = normalize_text(
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
        "何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している、"
        "吾輩はここで始めて人間というものを見た、しかもあとで聞くとそれは書生という"
        "人間中で一番獰悪な種族であったそうだ。"
        + "この書生というのは時々我々を捕えて煮て食うという話である" * 3
        + "。"
    )
    limit = xtts_char_limit("ja")
    segments = split_segments(text, limit)
    assert segments[:3] == [
        "吾輩は猫である。",
        "名前はまだ無い。",
        "どこで生れたかとんと見当がつかぬ。",
    ]
    assert all(0 < len(s) <= limit for s in segments)
    assert "".join(segments) == text


def test_chinese_text_fits_zh_cn_limit() -> None:
    text = normalize_text(
        "今天天气很好，我们去公园散步吧！你觉得怎么样？"  # noqa: RUF001 (full-width on purpose)
        + "春天来了，花儿开了，小鸟在树上唱歌，孩子们在草地上快乐地奔跑和玩耍" * 4  # noqa: RUF001
        + "。"
        + "这是一个没有任何标点符号的非常长的句子用来测试硬切分是否能够正确地工作并且不丢失任何字符"
        * 3
    )
    limit = xtts_char_limit("zh-cn")
    segments = split_segments(text, limit)
    assert segments[:2] == ["今天天气很好,我们去公园散步吧!", "你觉得怎么样?"]
    assert all(0 < len(s) <= limit for s in segments)
    assert "".join(segments) == text
    # The over-long sentence with commas is cut after a comma, not mid-phrase.
    assert segments[2].endswith(",")


@pytest.mark.parametrize(
    "text",
    [
        "Hello world, this is a test of 3.5 things. Really? Yes! " * 18_000,
        "\u6211." * 500_000,
        "x" * 1_000_000,
        ". " * 500_000,
    ],
    ids=["english", "cjk-period-per-char", "no-spaces", "dots"],
)
def test_million_char_inputs_split_within_the_limit_losing_nothing(text: str) -> None:
    segments = split_segments(text, 250)
    assert all(len(s) <= 250 for s in segments)
    assert "".join(segments).replace(" ", "") == text.replace(" ", "")
