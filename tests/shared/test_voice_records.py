"""Cloned-voice records in both tenant stores: the embedded SQLite file and Supabase on the real
Postgres + PostgREST stack, migrations as written. Tenant names are unique per test, so the
shared stack never mixes tests' voices."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.errors import InvalidInput, NotFound, QuotaExceeded, Unauthorized, VoiceNotFound
from shared.tenants.base import UNLIMITED, TenantLimits, TenantStore
from shared.tenants.keys import new_api_key
from shared.tenants.sqlite_store import SCHEMA_VERSION, SqliteTenantStore
from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase
from shared.tenants.voices import (
    MAX_OBJECT_KEY_BYTES,
    MAX_VOICE_DESCRIPTION_CHARS,
    MAX_VOICE_NAME_CHARS,
    VoiceChanges,
    VoiceFields,
    VoiceRecord,
)
from tests.supabase_stack import MIGRATIONS_DIR, SupabaseStack

NOT_FOUND = "voice_not_found: this tenant has no such voice"
VOICE_ID = re.compile(r"v_[0-9a-f]{16}")


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def new_tenant(store: TenantStore, max_voices: int | None = 10) -> str:
    return store.create_tenant(unique_name("voices"), TenantLimits(max_voices=max_voices)).tenant.id


def xtts(name: str) -> VoiceFields:
    """The fields of a plain new voice: a name and the engine, nothing optional."""
    return VoiceFields(name=name, engine="xtts")


@pytest.fixture
def supabase_workers(
    supabase_stack: SupabaseStack,
) -> Iterator[tuple[SupabaseTenantStore, SupabaseTenantStore]]:
    """Two Supabase stores, each with its own client and HTTP connections, as two workers."""
    stores = [
        SupabaseTenantStore(
            connect_supabase(
                supabase_stack.url, supabase_stack.service_role_key, plain_postgrest=True
            )
        )
        for _ in range(2)
    ]
    yield stores[0], stores[1]
    for store in stores:
        store.close()


@pytest.fixture(params=["sqlite", "supabase"])
def worker_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TenantStore, TenantStore]]:
    """Two stores on one database, as two workers hold them: two SQLite connections to one
    file, or two Supabase clients."""
    if request.param == "supabase":
        yield request.getfixturevalue("supabase_workers")
        return
    stores = [SqliteTenantStore(tmp_path / "tenants.sqlite3") for _ in range(2)]
    yield stores[0], stores[1]
    for store in stores:
        store.close()


def test_a_voice_round_trips_through_create_list_get_update_and_delete(
    any_store: TenantStore,
) -> None:
    tenant_id = new_tenant(any_store)
    created = any_store.create_voice(
        tenant_id,
        VoiceFields(
            name="Reception",
            engine="xtts",
            language="en",
            description="the front desk",
            reference_object_key="t/voices/ref.wav",
            latents_object_key="t/voices/latents.pt",
            version="sha256-0123abcd",
        ),
    )
    assert VOICE_ID.fullmatch(created.voice_id)
    assert (created.tenant_id, created.name, created.engine) == (tenant_id, "Reception", "xtts")
    assert (created.language, created.description) == ("en", "the front desk")
    assert created.reference_object_key == "t/voices/ref.wav"
    assert created.latents_object_key == "t/voices/latents.pt"
    assert created.version == "sha256-0123abcd"
    assert created.created_at == created.updated_at and created.created_at.tzinfo is not None

    assert any_store.get_voice(tenant_id, created.voice_id) == created
    assert list(any_store.list_voices(tenant_id)) == [created]

    updated = any_store.update_voice(
        tenant_id,
        created.voice_id,
        VoiceChanges(name="Front desk", description=None, language="de"),
    )
    assert (updated.name, updated.description, updated.language) == ("Front desk", None, "de")
    assert (updated.engine, updated.version) == (created.engine, created.version)
    assert updated.reference_object_key == created.reference_object_key
    assert updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at
    assert any_store.get_voice(tenant_id, created.voice_id) == updated

    assert any_store.delete_voice(tenant_id, created.voice_id) == updated
    assert list(any_store.list_voices(tenant_id)) == []
    for attempt in (
        lambda: any_store.get_voice(tenant_id, created.voice_id),
        lambda: any_store.update_voice(tenant_id, created.voice_id, VoiceChanges(name="again")),
        lambda: any_store.delete_voice(tenant_id, created.voice_id),
    ):
        with pytest.raises(VoiceNotFound) as gone:
            attempt()
        assert str(gone.value) == NOT_FOUND


def test_voice_ids_are_drawn_by_the_server_and_listed_oldest_first(
    any_store: TenantStore,
) -> None:
    tenant_id = new_tenant(any_store)
    made = [any_store.create_voice(tenant_id, xtts("Same name")) for _ in range(5)]
    ids = [voice.voice_id for voice in made]
    assert len(set(ids)) == 5 and all(VOICE_ID.fullmatch(voice_id) for voice_id in ids)
    assert [voice.voice_id for voice in any_store.list_voices(tenant_id)] == ids
    # Optional fields left out are stored as absent, not as empty strings.
    assert (made[0].language, made[0].description, made[0].latents_object_key) == (None,) * 3


def test_the_version_changes_with_the_latents_and_only_then(any_store: TenantStore) -> None:
    tenant_id = new_tenant(any_store)
    voice = any_store.create_voice(tenant_id, xtts("Ada"))
    other = any_store.create_voice(tenant_id, xtts("Ada"))
    assert voice.version != other.version  # minted: never one a cache entry was made under

    edited = any_store.update_voice(
        tenant_id,
        voice.voice_id,
        VoiceChanges(
            name="Ada L.", description="calm", language="fr", reference_object_key="t/ref.flac"
        ),
    )
    assert edited.version == voice.version

    new_latents = any_store.update_voice(
        tenant_id, voice.voice_id, VoiceChanges(latents_object_key="t/l.pt")
    )
    assert new_latents.version not in (voice.version, other.version)
    same_key_again = any_store.update_voice(
        tenant_id, voice.voice_id, VoiceChanges(latents_object_key="t/l.pt")
    )
    assert same_key_again.version != new_latents.version  # the object may have been rewritten

    digest = "sha256-" + "ab" * 32
    given = any_store.update_voice(
        tenant_id, voice.voice_id, VoiceChanges(latents_object_key="t/l2.pt", version=digest)
    )
    assert (given.latents_object_key, given.version) == ("t/l2.pt", digest)
    assert (
        any_store.update_voice(tenant_id, voice.voice_id, VoiceChanges(version="v2")).version
        == "v2"
    )
    assert any_store.get_voice(tenant_id, voice.voice_id).version == "v2"


def test_an_update_with_nothing_to_change_returns_the_voice_as_it_is(
    any_store: TenantStore,
) -> None:
    tenant_id = new_tenant(any_store)
    voice = any_store.create_voice(
        tenant_id, VoiceFields(name="Ada", engine="xtts", description="d")
    )
    assert any_store.update_voice(tenant_id, voice.voice_id, VoiceChanges()) == voice
    with pytest.raises(VoiceNotFound):
        any_store.update_voice(tenant_id, "v_" + "0" * 16, VoiceChanges())


def test_another_tenants_voice_is_not_found_exactly_like_a_missing_one(
    any_store: TenantStore,
) -> None:
    owner = new_tenant(any_store)
    intruder = new_tenant(any_store)
    voice = any_store.create_voice(owner, VoiceFields(name="Private", engine="xtts", language="en"))
    mine = any_store.create_voice(intruder, xtts("Mine"))
    missing = "v_" + "f" * 16

    for voice_id in (voice.voice_id, missing):
        for attempt in (
            lambda voice_id=voice_id: any_store.get_voice(intruder, voice_id),
            lambda voice_id=voice_id: any_store.update_voice(
                intruder, voice_id, VoiceChanges(name="x")
            ),
            lambda voice_id=voice_id: any_store.update_voice(
                intruder, voice_id, VoiceChanges(latents_object_key="evil")
            ),
            lambda voice_id=voice_id: any_store.delete_voice(intruder, voice_id),
        ):
            with pytest.raises(VoiceNotFound) as refused:
                attempt()
            assert str(refused.value) == NOT_FOUND
            assert voice.voice_id not in str(refused.value)

    assert list(any_store.list_voices(intruder)) == [mine]
    assert list(any_store.list_voices(owner)) == [voice]
    assert any_store.get_voice(owner, voice.voice_id) == voice  # untouched by the attempts
    with pytest.raises(VoiceNotFound):
        any_store.get_voice(owner, mine.voice_id)


@pytest.mark.parametrize(
    "voice_id", ["", "v1", "V_0123456789ABCDEF", "v_0123456789abcdef0", "../v_0123", "x" * 5000]
)
def test_ids_the_server_never_draws_are_not_found(any_store: TenantStore, voice_id: str) -> None:
    tenant_id = new_tenant(any_store)
    for attempt in (
        lambda: any_store.get_voice(tenant_id, voice_id),
        lambda: any_store.update_voice(tenant_id, voice_id, VoiceChanges(name="x")),
        lambda: any_store.delete_voice(tenant_id, voice_id),
    ):
        with pytest.raises(VoiceNotFound) as refused:
            attempt()
        assert str(refused.value) == NOT_FOUND


def test_max_voices_is_enforced_and_deleting_one_frees_its_slot(any_store: TenantStore) -> None:
    tenant_id = new_tenant(any_store, max_voices=2)
    first = any_store.create_voice(tenant_id, xtts("one"))
    any_store.create_voice(tenant_id, xtts("two"))
    with pytest.raises(QuotaExceeded) as refused:
        any_store.create_voice(tenant_id, xtts("three"))
    assert str(refused.value) == (
        "quota_exceeded: this tenant has 2 of its 2 voices; delete one or raise max_voices"
    )
    assert [voice.name for voice in any_store.list_voices(tenant_id)] == ["one", "two"]

    any_store.delete_voice(tenant_id, first.voice_id)
    assert any_store.create_voice(tenant_id, xtts("three")).name == "three"

    zero = new_tenant(any_store, max_voices=0)
    with pytest.raises(QuotaExceeded, match="has 0 of its 0 voices"):
        any_store.create_voice(zero, xtts("none"))


def test_a_raised_limit_applies_to_the_next_create_and_none_is_unlimited(
    any_store: TenantStore,
) -> None:
    tenant_id = new_tenant(any_store, max_voices=1)
    any_store.create_voice(tenant_id, xtts("one"))
    with pytest.raises(QuotaExceeded):
        any_store.create_voice(tenant_id, xtts("two"))
    any_store.set_limits(tenant_id, UNLIMITED)
    beyond_the_default = 11  # TenantLimits() allows 10
    for n in range(beyond_the_default - 1):
        any_store.create_voice(tenant_id, xtts(f"more {n}"))
    assert len(any_store.list_voices(tenant_id)) == beyond_the_default


def test_two_workers_racing_for_the_last_slot_get_exactly_one_voice(
    worker_stores: tuple[TenantStore, TenantStore],
) -> None:
    """Eight creates at once, split over two stores on one database, for one free slot."""
    racers = 8
    tenant_id = new_tenant(worker_stores[0], max_voices=2)
    worker_stores[0].create_voice(tenant_id, xtts("existing"))
    start = threading.Barrier(racers)

    def create(n: int) -> str:
        start.wait(timeout=30)
        try:
            worker_stores[n % 2].create_voice(tenant_id, xtts(f"racer {n}"))
        except QuotaExceeded as exc:
            return exc.message
        return "created"

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = list(pool.map(create, range(racers)))
    assert outcomes.count("created") == 1, outcomes
    refusal = "this tenant has 2 of its 2 voices; delete one or raise max_voices"
    assert outcomes.count(refusal) == racers - 1, outcomes
    for store in worker_stores:
        assert len(store.list_voices(tenant_id)) == 2


def test_creates_held_up_after_counting_still_leave_one_voice_for_the_last_slot(
    supabase_stack: SupabaseStack,
    supabase_workers: tuple[SupabaseTenantStore, SupabaseTenantStore],
) -> None:
    """The race made certain: another session blocks inserts into voices (not reads) until
    every create is waiting, so a create that counted without holding the tenant's lock would
    count the same free slot as all the others."""
    racers = 6
    tenant_id = new_tenant(supabase_workers[0], max_voices=2)
    supabase_workers[0].create_voice(tenant_id, xtts("existing"))

    def hold_inserts() -> None:
        with pytest.raises(RuntimeError, match="canceling statement"):
            supabase_stack.psql(
                "begin; lock table public.voices in share mode; select pg_sleep(60); commit;"
            )

    def waiting(sql: str) -> int:
        return int(supabase_stack.psql(sql) or 0)

    holder = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation"
    holder += " where c.relname = 'voices' and l.mode = 'ShareLock' and l.granted"
    blocked = "select count(*) from pg_stat_activity"
    blocked += " where wait_event_type = 'Lock' and query like '%create_voice%'"
    with ThreadPoolExecutor(max_workers=racers + 1) as pool:
        gate = pool.submit(hold_inserts)
        poll_until(lambda: waiting(holder) == 1)
        results = [
            pool.submit(
                supabase_workers[n % 2].create_voice,
                tenant_id,
                xtts(f"racer {n}"),
            )
            for n in range(racers)
        ]
        try:
            poll_until(lambda: waiting(blocked) == racers)
        finally:  # open the gate whatever happened, or the pool would wait out the sleep
            supabase_stack.psql(
                "select pg_cancel_backend(l.pid) from pg_locks l join pg_class c"
                " on c.oid = l.relation where c.relname = 'voices' and l.mode = 'ShareLock'"
            )
        gate.result(timeout=30)
        outcomes = [_outcome(result) for result in results]
    assert outcomes.count("created") == 1, outcomes
    assert len(supabase_workers[1].list_voices(tenant_id)) == 2


def poll_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        time.sleep(0.02)


def _outcome(result: Future[VoiceRecord]) -> str:
    try:
        result.result(timeout=30)
    except QuotaExceeded as exc:
        return exc.message
    return "created"


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"name": ""}, "voice name"),
        ({"name": "   "}, "voice name"),
        ({"name": "x" * (MAX_VOICE_NAME_CHARS + 1)}, "voice name"),
        ({"name": "two\nlines"}, "U\\+000A"),
        ({"name": "nul\x00"}, "U\\+0000"),
        ({"description": "d" * (MAX_VOICE_DESCRIPTION_CHARS + 1)}, "at most 500 characters"),
        ({"description": "nul\x00"}, "U\\+0000"),
        ({"language": "english please"}, "language tag"),
        ({"language": ""}, "language tag"),
        ({"engine": "XTTS v2"}, "engine name"),
        ({"version": ""}, "voice version"),
        ({"version": "has space"}, "voice version"),
        ({"latents_object_key": "k" * (MAX_OBJECT_KEY_BYTES + 1)}, "latents_object_key"),
        ({"reference_object_key": ""}, "reference_object_key"),
        ({"reference_object_key": "a\nb"}, "reference_object_key"),
    ],
)
def test_out_of_bounds_fields_are_refused_before_any_query(
    any_store: TenantStore, fields: dict[str, str], refusal: str
) -> None:
    """Asked of a tenant and a voice that do not exist: the database, had it been asked, would
    have answered not found."""
    create = {"name": "ok", "engine": "xtts", **fields}
    with pytest.raises(InvalidInput, match=refusal):
        any_store.create_voice(str(uuid.uuid4()), VoiceFields(**create))
    changes = {key: value for key, value in fields.items() if key != "engine"}
    if changes:
        with pytest.raises(InvalidInput, match=refusal):
            any_store.update_voice(str(uuid.uuid4()), "v_" + "0" * 16, VoiceChanges(**changes))

    tenant_id = new_tenant(any_store)
    with pytest.raises(InvalidInput):
        any_store.create_voice(tenant_id, VoiceFields(**create))
    assert list(any_store.list_voices(tenant_id)) == []


def test_the_longest_fields_allowed_are_kept_exactly(any_store: TenantStore) -> None:
    tenant_id = new_tenant(any_store)
    name = "Ré " + "n" * (MAX_VOICE_NAME_CHARS - 3)
    description = "line one\nline two\t" + "d" * (MAX_VOICE_DESCRIPTION_CHARS - 18)
    voice = any_store.create_voice(
        tenant_id,
        VoiceFields(
            name=name,
            engine="xtts",
            language="zh-cn",
            description=description,
            latents_object_key="k" * MAX_OBJECT_KEY_BYTES,
        ),
    )
    stored = any_store.get_voice(tenant_id, voice.voice_id)
    assert (stored.name, stored.description, stored.language) == (name, description, "zh-cn")
    assert stored.latents_object_key == "k" * MAX_OBJECT_KEY_BYTES


def test_unknown_tenants_are_not_found_and_disabled_ones_create_nothing(
    any_store: TenantStore,
) -> None:
    for unknown in (str(uuid.uuid4()), "NOSUCH"):
        with pytest.raises(NotFound):
            any_store.create_voice(unknown, xtts("x"))
        with pytest.raises(NotFound):
            any_store.list_voices(unknown)
        with pytest.raises(VoiceNotFound):
            any_store.get_voice(unknown, "v_" + "0" * 16)

    tenant_id = new_tenant(any_store)
    kept = any_store.create_voice(tenant_id, xtts("kept"))
    any_store.set_active(tenant_id, False)
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        any_store.create_voice(tenant_id, xtts("new"))
    # A disabled tenant's voices stay readable and removable, for an operator cleaning up.
    assert list(any_store.list_voices(tenant_id)) == [kept]
    assert any_store.delete_voice(tenant_id, kept.voice_id) == kept


# --- migrations ---------------------------------------------------------------------------------


def make_version_1_file(path: Path) -> None:
    """A file as the store left it at schema version 1: version 2 added the voices table,
    version 3 a tenant's engine order and a usage row's fallback reason (a later bump that
    adds more makes the inserts below fail, so this is revisited then)."""
    SqliteTenantStore(path).close()
    old = sqlite3.connect(path)
    old.executescript(
        "DROP TABLE voices; ALTER TABLE tenants DROP COLUMN engine_order;"
        " ALTER TABLE usage_logs DROP COLUMN fallback_reason; PRAGMA user_version = 1;"
    )
    old.close()


def test_a_version_1_file_gains_voices_and_keeps_its_tenants_and_usage(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    api_key, parsed = new_api_key()
    make_version_1_file(path)
    old = sqlite3.connect(path)
    old.execute(
        "INSERT INTO tenants VALUES ('t-acme', 'acme', ?, ?, 1, NULL, NULL, NULL, 1, ?, ?)",
        (parsed.prefix, parsed.digest, "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:00+00:00"),
    )
    old.execute(
        "INSERT INTO usage_logs (tenant_id, job_id, request_id, action, input_chars,"
        " audio_bytes, audio_seconds, latency_ms, cached, streaming, created_at)"
        " VALUES ('t-acme', 'j1', 'r1', 'synthesize', 12, 0, 0, 0, 0, 0, ?)",
        (datetime.now(UTC).isoformat(),),
    )
    old.commit()
    old.close()

    store = SqliteTenantStore(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    tenant = store.authenticate(api_key)
    assert (tenant.id, tenant.limits.max_voices) == ("t-acme", 1)
    assert store.usage_by_day(tenant.id)[0].input_chars == 12
    voice = store.create_voice(tenant.id, xtts("Ada"))
    with pytest.raises(QuotaExceeded, match="has 1 of its 1 voices"):
        store.create_voice(tenant.id, xtts("Bob"))
    store.close()

    again = SqliteTenantStore(path)  # reopening keeps the voice
    assert list(again.list_voices(tenant.id)) == [voice]
    again.close()


_VOICE_RECORDS_MIGRATION = "20261201000100_voice_records.sql"


def test_an_existing_supabase_project_gains_voice_records_by_migration(tmp_path: Path) -> None:
    """`supabase db push` of the new file onto a project with a voice row from before."""
    older = tmp_path / "migrations"
    older.mkdir()
    for migration in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if migration.name < _VOICE_RECORDS_MIGRATION:
            shutil.copy(migration, older)
    with SupabaseStack(migrations_dir=older) as stack:
        tenant_id = stack.psql(
            "with t as (insert into tenants (name, key_prefix, key_hash, max_voices)"
            " values ('old', 'abcdefgh', repeat('0', 64), 2) returning id) select id from t"
        )
        stack.psql(
            "insert into voices (tenant_id, voice_id, name, created_at) values"
            f" ('{tenant_id}', 'v_0123456789abcdef', 'Old', now() - interval '1 day')"
        )
        stack.apply_migration(MIGRATIONS_DIR / _VOICE_RECORDS_MIGRATION)

        old = stack.psql(
            "select engine || '|' || (version ~ '^r-[0-9a-f]{32}$') || '|'"
            f" || (updated_at = created_at) from voices where tenant_id = '{tenant_id}'"
        )
        assert old == "xtts|true|true"
        create = (
            f"select public.create_voice('{tenant_id}', 'v_{{}}', 'New', 'xtts', null, null,"
            " 'r-1', null, null) ->> 'decision'"
        )
        assert stack.psql(create.format("1" * 16)) == "created"  # the old row counts: 2 of 2
        assert stack.psql(create.format("2" * 16)) == "limit_reached"
        stack.psql(f"update voices set name = 'Renamed' where voice_id = 'v_{'1' * 16}'")
        assert (
            stack.psql(
                f"select updated_at > created_at from voices where voice_id = 'v_{'1' * 16}'"
            )
            == "t"
        )
        with pytest.raises(RuntimeError, match="voices_name_length"):
            stack.psql(f"update voices set name = repeat('n', 101) where tenant_id = '{tenant_id}'")
