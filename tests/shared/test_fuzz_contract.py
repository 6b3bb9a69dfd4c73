"""Fuzzing the job contract: whatever a transport hands over, ``parse_job`` answers a job or a
coded ``TTSError`` whose message never quotes a value, and the real dispatcher (real Piper)
answers a result or a coded refusal, never an internal error, with exactly one usage row per
job and nothing charged for a refusal.

Two kinds of input: arbitrary JSON-like values (what a RunPod job or a WebSocket message can
hold once Python's ``json`` has read it: lone surrogates from ``\\ud800`` escapes, NaN and
Infinity, numbers past any bound), and near-valid jobs, a valid job of every action with one
field mutated, removed or added, which reach the deeper validators an arbitrary value never does.
Every test is derandomized: CI runs the same examples each time.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from shared.audio.formats import SUPPORTED_SAMPLE_RATES, AudioFormat
from shared.errors import ErrorCode, TTSError
from shared.jobs import ACTIONS, ApiKeyCredentials, JobLimits, parse_job
from shared.worker import WorkerContext
from tests.worker_fixtures import usage_rows

# A value that stands for the tenant's API key: jobs carry it into any field, and no error
# message may ever repeat it. The dispatcher test swaps in the real key.
SECRET = "sk-fuzz-SECRET-0123456789abcdef"
_SHORT_TEXT = 12  # characters: Piper speaks each dispatched text, ~0.1-0.3 s apiece here

# Every character class, lone surrogates (JSON's "\ud800" escapes) and controls included.
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=40)
huge_ints = st.integers(min_value=-(10**40), max_value=10**40)
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.49999, 2.00001, 1e308, -0.0]),
    any_text,
    st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "NaN", "1.5", "true", SECRET]),
    st.sampled_from([*ACTIONS, *(fmt.value for fmt in AudioFormat), "WAV", "voices.", ""]),
)


def json_like(leaves: st.SearchStrategy[Any], max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(any_text, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


arbitrary_json = json_like(hostile_scalars, max_leaves=25)


def _short_text() -> st.SearchStrategy[str]:
    return st.text(any_char, min_size=1, max_size=_SHORT_TEXT)


# Piper's one voice, as listed and bare, and voices no tenant has.
voice_ids = st.sampled_from(
    ["builtin:en_US-joe-medium", "en_US-joe-medium"] * 2 + ["nobody", "v_0"]
)


def valid_jobs(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid job of each action, with the optional fields it may carry."""
    style_fields = {
        "language": st.just("en"),  # all Piper's voice speaks ("en-us" is refused)
        "speed": st.floats(min_value=0.5, max_value=2.0),
        "format": st.sampled_from([fmt.value for fmt in AudioFormat]),
        "sample_rate": st.sampled_from(sorted(SUPPORTED_SAMPLE_RATES)),
        "request_id": st.from_regex(r"[A-Za-z0-9._:\-]{1,20}", fullmatch=True),
    }
    style = st.fixed_dictionaries({}, optional=style_fields)
    voice = {"voice": voice_ids}
    speech = st.fixed_dictionaries({}, optional={**style_fields, **voice})
    synthesize = st.builds(
        lambda speech, one, delivery, cache, action: {
            **speech,
            **one,
            "delivery": delivery,
            "cache": cache,
            **action,
        },
        speech,
        st.one_of(
            st.builds(lambda t: {"text": t}, text),
            st.builds(lambda t: {"ssml": f"<speak>{t}</speak>"}, st.from_regex(r"[a-z ]{1,10}")),
        ),
        st.sampled_from(["url", "base64", "stream"]),
        st.booleans(),
        st.sampled_from([{}, {"action": "synthesize"}]),
    )
    others = st.one_of(
        st.builds(
            lambda s, p: {**s, "action": "greetings.warm", "phrases": p},
            speech,
            st.lists(text, min_size=1, max_size=2),
        ),
        st.builds(lambda s, t: {**s, "action": "greetings.get", "text": t}, speech, text),
        st.sampled_from([{"action": "voices"}, {"action": "voices.list"}, {"action": "health"}]),
        st.builds(
            lambda name, source: {"action": "voices.create", "name": name, **source},
            text,
            st.sampled_from(
                [{"audio_base64": "UklGRg=="}, {"audio_url": "https://example.invalid/a.wav"}]
            ),
        ),
        st.builds(lambda v: {"action": "voices.get", "voice_id": v}, voice_ids),
        st.builds(lambda v: {"action": "voices.delete", "voice_id": v}, voice_ids),
        st.builds(
            lambda v, name: {"action": "voices.update", "voice_id": v, "name": name},
            voice_ids,
            text,
        ),
        st.builds(
            lambda s, v, t: {**s, "action": "voices.preview", "voice_id": v, "text": t},
            style,
            voice_ids,
            text,
        ),
    )
    return st.one_of(synthesize, synthesize, others)  # synthesize is most jobs, so most examples


# Every field any job has, and some no job has: a mutation may hit any of them.
FIELDS = sorted(
    {
        "action", "request_id", "language", "speed", "format", "sample_rate", "voice", "text",
        "ssml", "delivery", "cache", "phrases", "name", "description", "audio_base64",
        "audio_url", "audio", "voice_id", "api_key", "input", "__proto__", "",
    }
)  # fmt: skip


@st.composite
def near_valid_jobs(
    draw: st.DrawFn, text: st.SearchStrategy[str], values: st.SearchStrategy[Any]
) -> dict[str, Any]:
    """A valid job as it is, or with one field (its own, mostly) set to ``values``, removed,
    or over a bound."""
    job = draw(valid_jobs(text))
    mutation = draw(
        st.sampled_from(["keep", "keep", "set", "set", "set_any", "remove", "too_long"])
    )
    if mutation == "keep":
        return job
    field = draw(st.sampled_from(sorted(job if mutation != "set_any" else {*job, *FIELDS})))
    if mutation == "remove":
        job.pop(field, None)
    elif mutation == "too_long":
        job[field] = "a" * draw(st.sampled_from([129, 257, 2049, JobLimits().max_text_chars + 1]))
    else:
        job[field] = draw(values)
    return job


def is_coded(err: TTSError) -> bool:
    return err.code in set(ErrorCode) and bool(err.message)


def assert_refusal_is_coded(err: TTSError, secret: str) -> None:
    assert is_coded(err), repr(err)
    assert err.code is not ErrorCode.INTERNAL, f"an unhandled exception: {err!r}"
    assert secret not in str(err) and secret not in repr(err)


def assert_parses_or_refuses(raw: object) -> None:
    try:
        job = parse_job(raw, JobLimits())
    except TTSError as err:
        assert_refusal_is_coded(err, SECRET)
        return
    # A job that parsed says the same once written as JSON and read again (what a queue does).
    again = parse_job(job.model_dump(mode="json", exclude_unset=True), JobLimits())
    assert again == job


@settings(max_examples=400, deadline=None, derandomize=True)
@given(arbitrary_json)
def test_any_json_value_parses_or_is_refused_with_a_code(raw: object) -> None:
    assert_parses_or_refuses(raw)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(FIELDS), arbitrary_json, max_size=6))
def test_any_object_of_job_fields_parses_or_is_refused_with_a_code(raw: dict[str, Any]) -> None:
    assert_parses_or_refuses(raw)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(near_valid_jobs(_short_text(), arbitrary_json))
def test_a_near_valid_job_parses_or_is_refused_with_a_code(raw: dict[str, Any]) -> None:
    assert_parses_or_refuses(raw)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(valid_jobs(_short_text()))
def test_every_valid_job_parses(raw: dict[str, Any]) -> None:
    parse_job(raw, JobLimits())


def with_key(value: Any, key: str) -> Any:
    """``value`` with every ``SECRET`` (a string, a list item, a dict value) replaced by ``key``."""
    if value == SECRET:
        return key
    if isinstance(value, list):
        return [with_key(item, key) for item in value]
    if isinstance(value, dict):
        return {name: with_key(item, key) for name, item in value.items()}
    return value


def run_to_end(raw: object, key: str, worker: WorkerContext) -> TTSError | None:
    """Dispatch ``raw`` and read its stream, if any, to the end: the refusal, or None."""
    try:
        output = dispatch(raw, ApiKeyCredentials.of(key), worker)
        if isinstance(output, AudioStream):
            for _ in output:
                pass
    except TTSError as err:
        return err
    return None


# Dispatched jobs are spoken, so their structures stay small (every string is 40 characters
# at most already).
_dispatch_values = json_like(hostile_scalars, max_leaves=4)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=near_valid_jobs(_short_text(), _dispatch_values))
def test_the_dispatcher_answers_or_refuses_with_one_usage_row(
    raw: dict[str, Any], worker: WorkerContext, api_key: str
) -> None:
    before = len(usage_rows(worker))
    err = run_to_end(with_key(raw, api_key), api_key, worker)
    rows = usage_rows(worker)[before:]
    # What each example came to, for --hypothesis-show-statistics.
    event(f"{raw.get('action', 'synthesize')!s:.20}: {err.code.value if err else 'answered'}")
    assert len(rows) == 1, f"{len(rows)} usage rows for one job"
    [row] = rows
    if err is None:
        assert row["error_code"] is None
        return
    assert_refusal_is_coded(err, api_key)
    assert row["error_code"] == err.code.value
    assert row["input_chars"] == 0, f"a refused job was charged: {err}"


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.one_of(
        json_like(hostile_scalars, max_leaves=8).filter(lambda raw: not isinstance(raw, dict)),
        st.dictionaries(st.sampled_from(FIELDS), _dispatch_values, max_size=4),
    )
)
def test_the_dispatcher_answers_or_refuses_arbitrary_input_with_a_code(
    raw: object, worker: WorkerContext, api_key: str
) -> None:
    before = len(usage_rows(worker))
    err = run_to_end(with_key(raw, api_key), api_key, worker)
    [row] = usage_rows(worker)[before:]
    if err is not None:
        assert_refusal_is_coded(err, api_key)
        assert row["error_code"] == err.code.value and row["input_chars"] == 0


# The actions whose jobs have neither ``format`` nor ``sample_rate``.
_FORMATLESS = st.sampled_from(
    [
        {"action": "health"},
        {"action": "voices.list"},
        {"action": "voices.get", "voice_id": "v_0"},
        {"action": "voices.delete", "voice_id": "v_0"},
        {"action": "voices.create", "name": "n", "audio_url": "https://example.invalid/a.wav"},
    ]
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    job=_FORMATLESS,
    field=st.sampled_from(["format", "sample_rate"]),
    value=st.sampled_from(["wav", "mp3", 8000, 24000]),
)
def test_a_field_a_job_does_not_have_is_invalid_input(
    job: dict[str, Any], field: str, value: object
) -> None:
    """An unknown field is a malformed job, whatever its name: ``unsupported_format`` would
    tell the client to try another format on a job that takes none."""
    try:
        parse_job({**job, field: value}, JobLimits())
    except TTSError as err:
        assert err.code is ErrorCode.INVALID_INPUT, str(err)
    else:
        raise AssertionError("an unknown field was accepted")
