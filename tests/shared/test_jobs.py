"""The job contract: every field's bounds and types map to a stable error code.

Jobs here are RunPod inputs, the key among the fields: ``parse_input`` does what the RunPod
transport and the dispatcher do (take the key out, refuse a job without a usable one first,
then validate the rest), so the contract is checked as a client meets it.
"""

from __future__ import annotations

from typing import Any

import pytest

from serverless_tts.runpod_shapes import take_credentials
from shared.errors import ErrorCode, TTSError
from shared.jobs import (
    MAX_REFERENCE_BASE64_CHARS,
    MAX_REFERENCE_BYTES,
    ApiKeyCredentials,
    Job,
    JobLimits,
    SynthesizeJob,
    VoicesCreateJob,
    VoicesJob,
    VoicesPreviewJob,
    VoicesUpdateJob,
    parse_job,
)

LIMITS = JobLimits(max_text_chars=100)
VALID: dict[str, Any] = {"api_key": "k", "text": "Hello there."}


def parse_input(raw: object, limits: JobLimits = LIMITS) -> Job:
    credentials, job = take_credentials(raw)
    credentials.key()
    return parse_job(job, limits)


def code_of(raw: object, limits: JobLimits = LIMITS) -> ErrorCode:
    with pytest.raises(TTSError) as caught:
        parse_input(raw, limits)
    return caught.value.code


def test_minimal_job_gets_documented_defaults() -> None:
    job = parse_input(VALID, LIMITS)
    assert isinstance(job, SynthesizeJob)
    assert (job.language, job.speed, job.format, job.delivery) == ("en", 1.0, "wav", "url")
    assert job.sample_rate is None and job.voice is None and job.request_id is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"api_key": ""}, ErrorCode.UNAUTHORIZED),
        ({"api_key": 123}, ErrorCode.UNAUTHORIZED),
        ({"api_key": "k" * 257}, ErrorCode.UNAUTHORIZED),
        ({"text": None}, ErrorCode.INVALID_INPUT),
        ({"text": 42}, ErrorCode.INVALID_INPUT),
        ({"text": ["a"]}, ErrorCode.INVALID_INPUT),
        ({"ssml": "<speak>hi</speak>"}, ErrorCode.INVALID_INPUT),  # both text and ssml
        ({"text": "x" * 101}, ErrorCode.TEXT_TOO_LONG),
        ({"voice": ""}, ErrorCode.INVALID_INPUT),
        ({"voice": "v" * 129}, ErrorCode.INVALID_INPUT),
        ({"voice": "../etc/passwd"}, ErrorCode.INVALID_INPUT),
        ({"language": "english"}, ErrorCode.INVALID_INPUT),
        ({"language": 7}, ErrorCode.INVALID_INPUT),
        ({"speed": 0.49}, ErrorCode.INVALID_INPUT),
        ({"speed": 2.01}, ErrorCode.INVALID_INPUT),
        ({"speed": "fast"}, ErrorCode.INVALID_INPUT),
        ({"speed": float("nan")}, ErrorCode.INVALID_INPUT),
        ({"format": "aiff"}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"format": 3}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"sample_rate": 11111}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"sample_rate": "24000"}, ErrorCode.UNSUPPORTED_FORMAT),
        ({"delivery": "email"}, ErrorCode.INVALID_INPUT),
        ({"request_id": ""}, ErrorCode.INVALID_INPUT),
        ({"request_id": "a b"}, ErrorCode.INVALID_INPUT),
        ({"request_id": "r" * 129}, ErrorCode.INVALID_INPUT),
        ({"unexpected": 1}, ErrorCode.INVALID_INPUT),
        ({"action": "delete_everything"}, ErrorCode.INVALID_INPUT),
    ],
)
def test_each_bad_field_gets_its_code(change: dict[str, Any], code: ErrorCode) -> None:
    assert code_of({**VALID, **change}) == code


def test_missing_api_key_is_unauthorized_even_with_other_errors() -> None:
    assert code_of({"text": "hi"}) == ErrorCode.UNAUTHORIZED
    assert code_of({"text": 5, "format": "aiff"}) == ErrorCode.UNAUTHORIZED


def test_neither_text_nor_ssml_is_invalid_input() -> None:
    assert code_of({"api_key": "k"}) == ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("raw", [None, "text", 5, ["api_key"]])
def test_input_that_is_not_an_object_is_invalid_input(raw: object) -> None:
    assert code_of(raw) == ErrorCode.UNAUTHORIZED  # it carries no key, so that comes first
    with pytest.raises(TTSError) as caught:
        parse_job(raw, LIMITS)
    assert caught.value.code == ErrorCode.INVALID_INPUT


def test_ssml_may_use_twice_the_text_bound_for_markup() -> None:
    ssml = "<speak>" + "a" * 150 + "</speak>"
    assert isinstance(parse_input({"api_key": "k", "ssml": ssml}, LIMITS), SynthesizeJob)
    too_long = "<speak>" + "a" * 200 + "</speak>"
    assert code_of({"api_key": "k", "ssml": too_long}) == ErrorCode.TEXT_TOO_LONG


def test_text_bound_comes_from_configuration() -> None:
    text = "x" * 150
    assert code_of({**VALID, "text": text}) == ErrorCode.TEXT_TOO_LONG
    job = parse_input({**VALID, "text": text}, JobLimits(max_text_chars=150))
    assert isinstance(job, SynthesizeJob)


def test_error_messages_never_echo_the_api_key() -> None:
    secret = "stts_deadbeef_" + "s" * 43
    with pytest.raises(TTSError) as caught:
        parse_input({"api_key": secret, "text": 5, "speed": "x"}, LIMITS)
    assert secret not in str(caught.value)
    with pytest.raises(TTSError) as caught:
        parse_job({"api_key": secret, "text": 5}, LIMITS)  # a key left among the fields
    assert secret not in str(caught.value)
    with pytest.raises(TTSError) as caught:
        parse_input({**VALID, "text": 5, "speed": "x"}, LIMITS)
    assert "text" in caught.value.message and "speed" in caught.value.message


def test_api_key_is_hidden_in_the_credentials_repr() -> None:
    credentials, job = take_credentials({**VALID, "api_key": "super-secret"})
    assert "super-secret" not in repr(credentials) + repr(job)
    assert credentials == ApiKeyCredentials.of("super-secret")


def test_voices_action_parses_its_own_model() -> None:
    assert isinstance(parse_input({"action": "voices", "api_key": "k"}, LIMITS), VoicesJob)


def test_all_documented_formats_and_rates_are_accepted() -> None:
    for fmt in ("wav", "mp3", "ogg_opus", "flac", "pcm16", "mulaw", "aac", "voice_note"):
        for rate in (8000, 16000, 22050, 24000, 44100, 48000):
            job = parse_input({**VALID, "format": fmt, "sample_rate": rate}, LIMITS)
            assert isinstance(job, SynthesizeJob)


# --- voice operations ------------------------------------------------------------------------

REFERENCE = {"api_key": "k", "action": "voices.create", "name": "Front desk"}


@pytest.mark.parametrize(
    ("sources", "code"),
    [
        ({}, ErrorCode.INVALID_INPUT),
        (
            {"audio_base64": "UklGRg==", "audio_url": "https://a.example/r.wav"},
            ErrorCode.INVALID_INPUT,
        ),
        ({"audio_base64": "A" * (MAX_REFERENCE_BASE64_CHARS + 4)}, ErrorCode.REFERENCE_TOO_LARGE),
        ({"audio_url": "https://a.example/" + "x" * 2048}, ErrorCode.INVALID_INPUT),
        ({"audio": "UklGRg=="}, ErrorCode.INVALID_INPUT),  # bytes never come from JSON
    ],
)
def test_a_voice_is_made_from_exactly_one_bounded_source(
    sources: dict[str, Any], code: ErrorCode
) -> None:
    assert code_of({**REFERENCE, **sources}) == code


def test_the_base64_bound_is_the_reference_byte_limit() -> None:
    at_limit = {**REFERENCE, "audio_base64": "A" * MAX_REFERENCE_BASE64_CHARS}
    assert isinstance(parse_input(at_limit), VoicesCreateJob)
    assert MAX_REFERENCE_BASE64_CHARS * 3 // 4 >= MAX_REFERENCE_BYTES


def test_a_voice_update_keeps_what_it_leaves_out_and_never_clears_the_name() -> None:
    base = {"api_key": "k", "action": "voices.update", "voice_id": "v_0123456789abcdef"}
    job = parse_input({**base, "description": None})
    assert isinstance(job, VoicesUpdateJob) and job.model_fields_set == {
        "action",
        "voice_id",
        "description",
    }
    assert code_of({**base, "name": None}) == ErrorCode.INVALID_INPUT


def test_a_preview_names_its_voice_as_voice_id_only() -> None:
    base = {"api_key": "k", "action": "voices.preview", "voice_id": "builtin:Ana Florence"}
    assert isinstance(parse_input(base), VoicesPreviewJob)
    assert code_of({**base, "voice": "other"}) == ErrorCode.INVALID_INPUT
    assert code_of({**base, "text": "x" * 501}) == ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("action", ["voices", "voices.list"])
def test_both_names_of_the_voice_listing_parse_alike(action: str) -> None:
    assert isinstance(parse_input({"api_key": "k", "action": action}), VoicesJob)
