from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.text.normalize import normalize_text


@settings(max_examples=1000, deadline=None)
@given(st.text())
@example("e\u200d\u0301")  # removing the joiner lets NFKC compose e + accent
@example("\u1100\u200b\u1161")  # Hangul jamo separated by a zero-width space
@example("a \u00b4 b")
@example("x\u2013\u0301")
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_output_has_no_edge_or_repeated_whitespace_and_is_utf8_encodable(text: str) -> None:
    result = normalize_text(text)
    assert result == result.strip()
    assert "  " not in result
    assert all(char == " " or not char.isspace() for char in result)
    result.encode("utf-8")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\u201cHello,\u201d she said. \u2018Hi\u2019", "\"Hello,\" she said. 'Hi'"),
        ("don\u00b4t", "don't"),
        ("wait\u2026 what", "wait... what"),
        ("yes\u2014no", "yes - no"),
        ("yes \u2013 no", "yes - no"),
        ("pages 10\u201320", "pages 10-20"),
        ("\u22125 degrees", "-5 degrees"),
        ("  lots \t of\n\nspace\r\n ", "lots of space"),
        ("zero\u200bwidth\ufeff joiner\u200d", "zerowidth joiner"),
        ("bell\x07 and\x00 null", "bell and null"),
        ("\uff21\uff22\uff23\uff01 \ufb01ne", "ABC! fine"),
        ("caf\u0065\u0301", "caf\u00e9"),
        ("non\u00a0breaking\u3000space", "non breaking space"),
        ("\ud800lone surrogate", "lone surrogate"),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\u4eca\u65e5\u306f\u3044\u3044\u5929\u6c17\u3067\u3059\u306d\u3002",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e\u0964",
        "\uc548\ub155\ud558\uc138\uc694",
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    ],
    ids=["japanese", "arabic", "devanagari", "korean", "russian", "hebrew", "thai"],
)
def test_letters_of_every_script_are_kept(text: str) -> None:
    assert normalize_text(text) == unicodedata.normalize("NFKC", text)


def test_every_format_character_of_this_python_is_removed() -> None:
    # Guards the hard-coded invisible set against a newer Unicode version adding Cf characters.
    format_chars = [
        chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"
    ]
    assert normalize_text("a" + "".join(format_chars) + "b") == "ab"


def test_empty_and_whitespace_only_text_normalize_to_empty() -> None:
    assert normalize_text("") == ""
    assert normalize_text(" \n\u200b\t ") == ""
