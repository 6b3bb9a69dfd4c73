"""Cloned voices through the job contract (RunPod's shapes), on both stacks: the embedded
defaults (SQLite, local disk) and the real Postgres + PostgREST stack with the S3 test server.

The tiny random-weight XTTS runs coqui's real conditioning code, so its calls can be counted:
a voice's latents are computed once, at creation, whatever jobs and workers follow.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest

from serverless_tts.runpod_shapes import run_job
from shared.audio.encode import encode
from shared.audio.formats import AudioFormat
from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.xtts import XttsEngine
from shared.errors import TTSError
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED, TenantLimits
from shared.worker import WorkerContext, build_worker
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.engine_wrappers import counting
from tests.s3_server import MotoS3, s3_client_for
from tests.shared.test_net_fetch import body, endless, site, status
from tests.shared.test_voice_reference import encoded, voiced
from tests.supabase_fixtures import on_supabase
from tests.supabase_stack import SupabaseStack
from tests.worker_fixtures import usage_rows

SPEECH = "Thanks for calling. This is the voice our customers hear on every call, all day long."


@pytest.fixture(scope="module")
def reference_wav(piper_engine: Engine) -> bytes:
    """Real speech (about 5 s) as a tenant would upload it."""
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(SPEECH, voice=voice, language="en", speed=1.0)
    return encode(pcm, in_rate=piper_engine.sample_rate, fmt=AudioFormat.WAV, out_rate=24000)


@pytest.fixture(scope="module")
def other_reference() -> bytes:
    """A different voice altogether: another reference gives other latents."""
    return encoded(voiced(6.0), "flac")


@dataclass
class Stack:
    """Workers on one tenant store and one audio store; each ``worker()`` is a new process's
    worth of state (its own voice LRU) around the same engine."""

    name: str
    worker: Callable[[], WorkerContext]

    def tenant(self, ctx: WorkerContext, limits: TenantLimits = UNLIMITED) -> str:
        return ctx.tenants.create_tenant(f"voices-{uuid.uuid4().hex[:12]}", limits).api_key


@pytest.fixture(params=["embedded", "supabase"])
def stack(
    request: pytest.FixtureRequest, settings: Settings, xtts_engine: Engine
) -> Iterator[Stack]:
    made: list[WorkerContext] = []
    configured = settings.model_copy(update={"engine": "xtts"})
    storage: Callable[[], S3AudioStore | None] = lambda: None  # noqa: E731
    if request.param == "supabase":
        supabase: SupabaseStack = request.getfixturevalue("supabase_stack")
        s3: MotoS3 = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        configured = on_supabase(configured, supabase)

        def storage() -> S3AudioStore:  # a client per worker, as separate processes have
            return S3AudioStore(s3_client_for(s3.endpoint_url), bucket=bucket)

    def worker() -> WorkerContext:
        made.append(build_worker(configured, engine=xtts_engine, storage=storage()))
        return made[-1]

    yield Stack(request.param, worker)
    for ctx in made:
        ctx.close()


def job(ctx: WorkerContext, key: str, **fields: Any) -> dict[str, Any]:
    [item] = run_job({"api_key": key, **fields}, ctx)
    return item


def refused(ctx: WorkerContext, key: str, **fields: Any) -> str:
    with pytest.raises(TTSError) as caught:
        run_job({"api_key": key, **fields}, ctx)
    return caught.value.code.value


def create(ctx: WorkerContext, key: str, audio: bytes, **fields: Any) -> dict[str, Any]:
    return job(
        ctx, key, action="voices.create", name="Front desk", audio_base64=_b64(audio), **fields
    )


def speak(ctx: WorkerContext, key: str, voice: str, text: str = "Hello there.") -> dict[str, Any]:
    return job(ctx, key, text=text, voice=voice, delivery="base64", format="wav")


def conditioning_calls(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> Callable[[], tuple[int, int]]:
    """How often coqui's conditioning code ran: (GPT latents, speaker embedding)."""
    model = cast(XttsEngine, engine)._model
    gpt = counting(monkeypatch, model, "get_gpt_cond_latents")
    speaker = counting(monkeypatch, model, "get_speaker_embedding")
    return lambda: (len(gpt), len(speaker))


# --- the whole life of a voice ---------------------------------------------------------------


def test_a_voice_is_cloned_once_and_spoken_by_every_job_and_a_new_worker(
    stack: Stack, reference_wav: bytes, xtts_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = conditioning_calls(monkeypatch, xtts_engine)
    first = stack.worker()
    key = stack.tenant(first)
    voice = create(first, key, reference_wav, language="en", description="Main line")
    assert calls() == (1, 1)
    assert voice["id"].startswith("v_") and voice["kind"] == "cloned" and voice["ready"]
    assert voice["version"].startswith("sha256-") and voice["engine"] == "xtts"

    spoken = [speak(first, key, voice["id"], text) for text in ("One.", "Two.", "Three.")]
    assert {(one["voice"], one["voice_version"]) for one in spoken} == {
        (voice["id"], voice["version"])
    }
    for one in spoken:
        probe = audio_stream(ffprobe_json(base64.b64decode(one["audio_base64"]), ".wav"))
        assert probe["codec_name"] == "pcm_s16le" and float(probe["duration"]) > 0
    assert first.voices.ready.misses == 1  # read from storage once; the rest from memory

    second = stack.worker()  # another process: an empty LRU, the same stores
    again = speak(second, key, voice["id"], "Four.")
    assert again["voice_version"] == voice["version"]
    assert second.voices.ready.misses == 1
    assert calls() == (1, 1)  # never computed again: loaded from storage


def test_update_list_delete_then_voice_not_found(stack: Stack, reference_wav: bytes) -> None:
    ctx = stack.worker()
    key = stack.tenant(ctx)
    voice = create(ctx, key, reference_wav, description="Old")
    renamed = job(
        ctx, key, action="voices.update", voice_id=voice["id"], name="Night line",
        description=None, language="de",
    )  # fmt: skip
    assert (renamed["name"], renamed.get("description"), renamed["language"]) == (
        "Night line",
        None,
        "de",
    )
    assert renamed["version"] == voice["version"]  # the latents did not change
    listed = job(ctx, key, action="voices.list")
    ids = [entry["id"] for entry in listed["voices"]]
    builtins = [f"builtin:{name.id}" for name in ctx.engines.default.engine.voices()]
    assert ids == [*builtins, voice["id"]]
    assert listed["default_voice"] in builtins
    assert job(ctx, key, action="voices.get", voice_id=voice["id"])["name"] == "Night line"

    assert job(ctx, key, action="voices.delete", voice_id=voice["id"]) == {
        "id": voice["id"],
        "deleted": True,
    }
    for fields in (
        {"action": "voices.get", "voice_id": voice["id"]},
        {"action": "voices.update", "voice_id": voice["id"], "name": "x"},
        {"action": "voices.delete", "voice_id": voice["id"]},
        {"action": "voices.preview", "voice_id": voice["id"], "delivery": "base64"},
        {"text": "Gone?", "voice": voice["id"], "delivery": "base64"},
    ):
        assert refused(ctx, key, **fields) == "voice_not_found"
    assert [entry["id"] for entry in job(ctx, key, action="voices.list")["voices"]] == builtins


def test_deleting_a_voice_removes_its_objects(stack: Stack, reference_wav: bytes) -> None:
    ctx = stack.worker()
    key = stack.tenant(ctx)
    voice = create(ctx, key, reference_wav)
    tenant = ctx.tenants.authenticate(key)
    record = ctx.tenants.get_voice(tenant.id, voice["id"])
    stored = [record.reference_object_key, record.latents_object_key]
    assert stored == [
        f"voices/{tenant.id}/{voice['id']}/reference.wav",
        f"voices/{tenant.id}/{voice['id']}/latents.npz",
    ]
    assert ctx.storage.get(stored[0]) == reference_wav  # the upload, kept as sent
    job(ctx, key, action="voices.delete", voice_id=voice["id"])
    assert [ctx.storage.get(one) for one in stored if one] == [None, None]


def test_a_re_created_voice_is_never_answered_with_the_old_voices_cached_audio(
    stack: Stack, reference_wav: bytes, other_reference: bytes
) -> None:
    ctx = stack.worker()
    key = stack.tenant(ctx)
    old = create(ctx, key, reference_wav)
    first = speak(ctx, key, old["id"])
    assert (first["cached"], speak(ctx, key, old["id"])["cached"]) == (False, True)
    job(ctx, key, action="voices.delete", voice_id=old["id"])
    for audio in (reference_wav, other_reference):  # the same reference, and another
        new = create(ctx, key, audio)
        assert new["id"] != old["id"]
        again = speak(ctx, key, new["id"])
        assert again["cached"] is False and again["voice"] == new["id"]
        job(ctx, key, action="voices.delete", voice_id=new["id"])


# --- preview -------------------------------------------------------------------------------


def test_a_preview_speaks_the_voice_in_its_language_and_is_cached(
    stack: Stack, reference_wav: bytes
) -> None:
    ctx = stack.worker()
    key = stack.tenant(ctx)
    voice = create(ctx, key, reference_wav, language="es")
    sample = job(ctx, key, action="voices.preview", voice_id=voice["id"], delivery="base64")
    assert (sample["voice"], sample["language"], sample["cached"]) == (voice["id"], "es", False)
    assert probe_duration_s(ffprobe_json(base64.b64decode(sample["audio_base64"]), ".wav")) > 0
    again = job(ctx, key, action="voices.preview", voice_id=voice["id"], delivery="url")
    assert again["cached"] is True and again["url"]
    streamed = run_job(
        {"api_key": key, "action": "voices.preview", "voice_id": voice["id"], "text": "Hola.",
         "language": "en", "delivery": "stream", "format": "mp3"},
        ctx,
    )  # fmt: skip
    assert streamed[-1]["final"] and streamed[-1]["voice"] == voice["id"]
    audio = b"".join(base64.b64decode(item["audio_base64"]) for item in streamed)
    assert audio_stream(ffprobe_json(audio, ".mp3"))["codec_name"] == "mp3"


def test_a_builtin_voice_previews_by_its_listed_id(stack: Stack) -> None:
    ctx = stack.worker()
    key = stack.tenant(ctx)
    listed = job(ctx, key, action="voices.list")["voices"][0]
    sample = job(ctx, key, action="voices.preview", voice_id=listed["id"], delivery="base64")
    assert sample["voice"] == listed["id"] and sample["voice_version"] == listed["version"]


# --- tenants -------------------------------------------------------------------------------


def test_another_tenant_can_never_see_use_or_change_a_voice(
    stack: Stack, reference_wav: bytes
) -> None:
    ctx = stack.worker()
    owner, stranger = stack.tenant(ctx), stack.tenant(ctx)
    voice = create(ctx, owner, reference_wav)
    theirs = job(ctx, stranger, action="voices.list")["voices"]
    assert voice["id"] not in [entry["id"] for entry in theirs]
    messages = set()
    for fields in (
        {"action": "voices.get", "voice_id": voice["id"]},
        {"action": "voices.update", "voice_id": voice["id"], "name": "Mine now"},
        {"action": "voices.delete", "voice_id": voice["id"]},
        {"action": "voices.preview", "voice_id": voice["id"], "delivery": "base64"},
        {"text": "Hi.", "voice": voice["id"], "delivery": "base64"},
    ):
        with pytest.raises(TTSError) as caught:
            run_job({"api_key": stranger, **fields}, ctx)
        assert caught.value.code.value == "voice_not_found"
        messages.add(caught.value.message)
    # The same answer as for a voice that never existed.
    with pytest.raises(TTSError) as missing:
        run_job({"api_key": stranger, "action": "voices.get", "voice_id": "v_" + "0" * 16}, ctx)
    assert messages == {missing.value.message}
    kept = job(ctx, owner, action="voices.get", voice_id=voice["id"])
    assert kept["name"] == "Front desk"


def test_two_concurrent_creates_at_a_limit_of_one_make_one_voice(
    stack: Stack, reference_wav: bytes
) -> None:
    workers = [stack.worker(), stack.worker()]
    key = stack.tenant(workers[0], replace(UNLIMITED, max_voices=1))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def attempt(ctx: WorkerContext) -> None:
        barrier.wait()
        try:
            create(ctx, key, reference_wav)
            outcomes.append("created")
        except TTSError as err:
            outcomes.append(err.code.value)

    threads = [threading.Thread(target=attempt, args=(ctx,)) for ctx in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["created", "quota_exceeded"]
    listed = job(workers[0], key, action="voices.list")["voices"]
    assert len([entry for entry in listed if entry["kind"] == "cloned"]) == 1


# --- charging and usage ------------------------------------------------------------------


def test_every_voice_operation_is_charged_and_leaves_a_usage_row(
    settings: Settings, xtts_engine: Engine, reference_wav: bytes
) -> None:
    ctx = build_worker(
        settings.model_copy(update={"engine": "xtts", "voice_create_chars": 250}),
        engine=xtts_engine,
    )
    try:
        limits = replace(UNLIMITED, monthly_char_quota=1000)
        key = ctx.tenants.create_tenant("charged", limits).api_key
        voice = create(ctx, key, reference_wav)
        for fields in (
            {"action": "voices.list"},
            {"action": "voices.get", "voice_id": voice["id"]},
            {"action": "voices.update", "voice_id": voice["id"], "name": "B"},
            {"action": "voices.preview", "voice_id": voice["id"], "text": "Hi."},
            {"action": "voices.delete", "voice_id": voice["id"]},
        ):
            job(ctx, key, **fields)
        assert ctx.usage.flush(timeout_s=10)
        tenant = ctx.tenants.authenticate(key)
        [day] = ctx.tenants.usage_by_day(tenant.id, days=1)
        assert day.requests == 6 and day.failed == 0
        assert day.input_chars == 250 + len("Hi.")
        # The quota counts each clone: 253 of 1000 gone, so two more fit and a third does not.
        for _ in range(2):
            job(ctx, key, action="voices.delete", voice_id=create(ctx, key, reference_wav)["id"])
        b64 = _b64(reference_wav)
        assert refused(ctx, key, action="voices.create", name="X", audio_base64=b64) == (
            "quota_exceeded"
        )
    finally:
        ctx.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- what a voice is made from -------------------------------------------------------------


@pytest.fixture
def xtts_worker(
    make_worker: Callable[[Engine], WorkerContext], xtts_engine: Engine
) -> WorkerContext:
    return make_worker(xtts_engine)


def bad_references() -> dict[str, bytes]:
    loud = voiced(6.0, peak=1.0) * 4
    return {
        "reference_too_short": encoded(voiced(2.0), "wav"),
        "reference_too_long": encoded(voiced(31.0), "mp3"),
        "reference_unreadable": b"<html>not audio</html>" * 20,
        "reference_silent": encoded(voiced(6.0) * 0, "flac"),
        "reference_clipped": encoded(loud.clip(-1, 1), "wav"),
    }


@pytest.mark.parametrize("code", sorted(bad_references()))
def test_each_bad_reference_is_refused_with_its_code_and_costs_nothing(
    xtts_worker: WorkerContext, code: str, xtts_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = conditioning_calls(monkeypatch, xtts_engine)
    key = xtts_worker.tenants.create_tenant("refs", UNLIMITED).api_key
    b64 = _b64(bad_references()[code])
    assert refused(xtts_worker, key, action="voices.create", name="V", audio_base64=b64) == code
    assert calls() == (0, 0)
    assert job(xtts_worker, key, action="voices.list")["voices"][-1]["kind"] == "builtin"


def test_a_reference_over_ten_megabytes_is_refused_before_it_is_decoded(
    xtts_worker: WorkerContext,
) -> None:
    key = xtts_worker.tenants.create_tenant("big", UNLIMITED).api_key
    huge = _b64(bytes(10_000_001))
    assert refused(xtts_worker, key, action="voices.create", name="V", audio_base64=huge) == (
        "reference_too_large"
    )
    assert refused(xtts_worker, key, action="voices.create", name="V", audio_base64="not b64!") == (
        "invalid_input"
    )


def test_a_reference_by_url_is_fetched_only_where_policy_allows(
    settings: Settings,
    make_worker: Callable[[Engine], WorkerContext],
    xtts_engine: Engine,
    reference_wav: bytes,
) -> None:
    routes = {"/ref.wav": body(reference_wav), "/gone": status(500), "/big": endless(declared=None)}
    with site(routes) as served:
        strict = make_worker(xtts_engine)
        key = strict.tenants.create_tenant("urls", UNLIMITED).api_key
        by_url = {"action": "voices.create", "name": "From URL"}
        # Plain http to loopback: refused unless the development setting allows it.
        assert refused(strict, key, **by_url, audio_url=served.url("/ref.wav")) == (
            "reference_url_refused"
        )
        assert served.paths == []  # refused before any connection
        for private in ("https://10.0.0.1/ref.wav", "https://169.254.169.254/latest/meta-data"):
            assert refused(strict, key, **by_url, audio_url=private) == "reference_url_refused"

        allowed = settings.model_copy(update={"voice_fetch_allow_http": True})
        dev = build_worker(allowed, engine=xtts_engine)
        try:
            voice = job(dev, key, **by_url, audio_url=served.url("/ref.wav"))
            assert voice["ready"] and served.paths == ["/ref.wav"]
            assert refused(dev, key, **by_url, audio_url=served.url("/gone")) == (
                "reference_unreachable"
            )
            assert refused(dev, key, **by_url, audio_url=served.url("/big")) == (
                "reference_too_large"
            )
        finally:
            dev.close()


# --- what cannot clone, and who has no voices ------------------------------------------------


def test_piper_answers_unsupported_by_engine_for_cloning_and_cloned_voices(
    make_worker: Callable[[Engine], WorkerContext],
    xtts_engine: Engine,
    piper_engine: Engine,
    reference_wav: bytes,
) -> None:
    xtts_ctx, piper_ctx = make_worker(xtts_engine), make_worker(piper_engine)  # one store
    key = xtts_ctx.tenants.create_tenant("engines", UNLIMITED).api_key
    voice = create(xtts_ctx, key, reference_wav)
    b64 = _b64(reference_wav)
    assert refused(piper_ctx, key, action="voices.create", name="V", audio_base64=b64) == (
        "unsupported_by_engine"
    )
    for fields in (
        {"text": "Hi.", "voice": voice["id"], "delivery": "base64"},
        {"action": "voices.preview", "voice_id": voice["id"], "delivery": "base64"},
    ):
        assert refused(piper_ctx, key, **fields) == "unsupported_by_engine"
    # Piper still lists the tenant's voices, and previews its own.
    listed = job(piper_ctx, key, action="voices.list")["voices"]
    assert [entry["id"] for entry in listed] == ["builtin:en_US-joe-medium", voice["id"]]
    sample = job(piper_ctx, key, action="voices.preview", voice_id=listed[0]["id"])
    assert sample["voice"] == "builtin:en_US-joe-medium"


def test_an_operator_run_without_a_tenant_has_no_voices_to_act_on(
    xtts_worker: WorkerContext, reference_wav: bytes
) -> None:
    from handlers.dispatch import dispatch
    from shared.jobs import OperatorCredentials

    raw = {"action": "voices.create", "name": "V", "audio_base64": _b64(reference_wav)}
    with pytest.raises(TTSError) as caught:
        dispatch(raw, OperatorCredentials(), xtts_worker)
    assert caught.value.code.value == "invalid_input"


def test_a_name_the_store_would_refuse_is_refused_before_any_work(
    xtts_worker: WorkerContext,
    reference_wav: bytes,
    xtts_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = conditioning_calls(monkeypatch, xtts_engine)
    key = xtts_worker.tenants.create_tenant("names", UNLIMITED).api_key
    for name in ("   ", "Front\x00desk"):
        assert (
            refused(
                xtts_worker,
                key,
                action="voices.create",
                name=name,
                audio_base64=_b64(reference_wav),
            )
            == "invalid_input"
        )
    assert calls() == (0, 0)
    assert usage_rows(xtts_worker)[-1]["input_chars"] == 0
