"""What both tenant stores must do alike, run against each: the embedded SQLite file and the
Supabase store on the real Postgres + PostgREST stack. Names are unique per test, so the shared
stack never mixes tests' tenants."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, RateLimited, Unauthorized
from shared.tenants.base import UNLIMITED, TenantLimits, TenantStore, UsageRecord
from shared.tenants.decisions import MAX_NAME_CHARS


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def job_row(tenant_id: str, request_id: str, input_chars: int) -> UsageRecord:
    return UsageRecord(
        tenant_id=tenant_id,
        request_id=request_id,
        action="synthesize",
        created_at=datetime.now(UTC),
        input_chars=input_chars,
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "\t",
        "acme\nevil",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "zero\u200bwidth",  # a format character (Cf): invisible in a listing
        "x" * (MAX_NAME_CHARS + 1),
    ],
)
def test_names_that_would_not_show_on_one_line_are_refused(
    any_store: TenantStore, name: str
) -> None:
    with pytest.raises(InvalidInput, match=f"1-{MAX_NAME_CHARS} characters"):
        any_store.create_tenant(name)


def test_names_are_kept_exactly_as_given(any_store: TenantStore) -> None:
    padded = f"  {unique_name('spaced')} été  "
    assert any_store.create_tenant(padded).tenant.name == padded
    longest = unique_name("x").ljust(MAX_NAME_CHARS, "y")
    assert any_store.create_tenant(longest).tenant.name == longest


def test_a_taken_name_is_a_conflict(any_store: TenantStore) -> None:
    name = unique_name("acme")
    any_store.create_tenant(name)
    with pytest.raises(Conflict, match=f"a tenant named '{name}' already exists") as refused:
        any_store.create_tenant(name)
    assert str(refused.value).startswith("conflict: ")


def test_usage_of_an_unknown_tenant_is_not_found(any_store: TenantStore) -> None:
    for tenant_id in (str(uuid.uuid4()), "NOSUCH"):
        with pytest.raises(NotFound):
            any_store.usage_by_day(tenant_id)


def test_an_unknown_or_disabled_tenant_id_is_not_charged(any_store: TenantStore) -> None:
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        any_store.authorize(str(uuid.uuid4()), 1)
    tenant = any_store.create_tenant(unique_name("off")).tenant
    any_store.set_active(tenant.id, False)
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        any_store.authorize(tenant.id, 1)


def test_unlimited_voices_are_stored_as_unlimited(any_store: TenantStore) -> None:
    issued = any_store.create_tenant(unique_name("voices"), TenantLimits(max_voices=None))
    assert issued.tenant.limits.max_voices is None
    assert any_store.get_tenant(issued.tenant.id).limits.max_voices is None
    assert any_store.set_limits(issued.tenant.id, UNLIMITED).limits == UNLIMITED
    assert any_store.authenticate(issued.api_key).limits == UNLIMITED


def test_a_limit_set_mid_window_counts_the_requests_already_made(any_store: TenantStore) -> None:
    tenant = any_store.create_tenant(unique_name("later"), UNLIMITED).tenant
    for _ in range(3):
        any_store.authorize(tenant.id, 1)
    any_store.set_limits(tenant.id, TenantLimits(monthly_char_quota=None, requests_per_minute=3))
    with pytest.raises(RateLimited, match="per-minute limit of 3"):
        any_store.authorize(tenant.id, 1)


def test_the_quota_counter_matches_the_usage_rows_when_jobs_reuse_a_request_id(
    any_store: TenantStore,
) -> None:
    """Two charged jobs with the client's same request id: both charged, both in usage."""
    tenant = any_store.create_tenant(
        unique_name("reuse"), TenantLimits(monthly_char_quota=100, requests_per_minute=None)
    ).tenant
    for _ in range(2):
        any_store.authorize(tenant.id, 40)
        any_store.write_usage([job_row(tenant.id, "reused", 40)])
    with pytest.raises(QuotaExceeded, match=r"\(80 of 100 used\)"):
        any_store.authorize(tenant.id, 21)
    [today] = any_store.usage_by_day(tenant.id)
    assert (today.requests, today.input_chars) == (2, 80)


def test_the_same_row_written_twice_is_one_row(any_store: TenantStore) -> None:
    tenant = any_store.create_tenant(unique_name("retry")).tenant
    row = job_row(tenant.id, "r1", 7)
    any_store.write_usage([row, row])
    any_store.write_usage([row])
    [today] = any_store.usage_by_day(tenant.id)
    assert (today.requests, today.input_chars) == (1, 7)
