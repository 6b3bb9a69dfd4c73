"""``usage_between`` on both tenant stores: the embedded SQLite file and the Supabase store on the
real Postgres + PostgREST stack. Days are UTC days, both ends included, exactly."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from shared.errors import NotFound
from shared.tenants.base import TenantStore, UsageRecord


def row(tenant_id: str, at: datetime, input_chars: int, **fields: object) -> UsageRecord:
    return UsageRecord(
        tenant_id=tenant_id,
        request_id=uuid.uuid4().hex,
        action="synthesize",
        created_at=at,
        input_chars=input_chars,
        **fields,  # type: ignore[arg-type]
    )


def at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=UTC)


@pytest.fixture
def tenant_id(any_store: TenantStore) -> str:
    return any_store.create_tenant(f"range-{uuid.uuid4().hex[:12]}").tenant.id


def test_both_ends_of_the_range_are_whole_utc_days(any_store: TenantStore, tenant_id: str) -> None:
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=5), today - timedelta(days=2)
    any_store.write_usage(
        [
            row(tenant_id, at(start, time.max) - timedelta(days=1), 1),  # the last instant before
            row(tenant_id, at(start, time.min), 10),
            row(tenant_id, at(start, time(12)), 20, error_code="voice_not_found"),
            row(tenant_id, at(end, time.max), 100, audio_seconds=1.5, audio_bytes=300),
            row(tenant_id, at(end + timedelta(days=1), time.min), 1000),  # the first after
            row(tenant_id, at(today, time.min), 10_000),
        ]
    )
    days = any_store.usage_between(tenant_id, start, end)
    assert [(d.day, d.requests, d.failed, d.input_chars) for d in days] == [
        (start, 2, 1, 30),
        (end, 1, 0, 100),
    ]
    assert (days[1].audio_seconds, days[1].audio_bytes) == (1.5, 300)
    [single] = any_store.usage_between(tenant_id, today, today)
    assert single.input_chars == 10_000


def test_a_range_long_ago_or_to_come_reaches_as_far_as_asked(
    any_store: TenantStore, tenant_id: str
) -> None:
    today = datetime.now(UTC).date()
    old = today - timedelta(days=400)
    any_store.write_usage(
        [row(tenant_id, at(old, time(8)), 7), row(tenant_id, at(today, time(0)), 1)]
    )
    [found] = any_store.usage_between(tenant_id, old - timedelta(days=1), old + timedelta(days=1))
    assert (found.day, found.input_chars) == (old, 7)
    assert any_store.usage_between(tenant_id, today + timedelta(days=1), date.max) == []
    everything = any_store.usage_between(tenant_id, date.min, date.max)
    assert [d.input_chars for d in everything] == [7, 1]


def test_a_tenant_sees_only_its_own_rows(any_store: TenantStore, tenant_id: str) -> None:
    other = any_store.create_tenant(f"other-{uuid.uuid4().hex[:12]}").tenant.id
    now = datetime.now(UTC)
    any_store.write_usage([row(tenant_id, now, 3), row(other, now, 4)])
    [mine] = any_store.usage_between(tenant_id, now.date(), now.date())
    assert mine.input_chars == 3


def test_usage_of_an_unknown_tenant_is_not_found(any_store: TenantStore) -> None:
    today = datetime.now(UTC).date()
    for unknown in (str(uuid.uuid4()), "NOSUCH"):
        with pytest.raises(NotFound):
            any_store.usage_between(unknown, today, today)
