"""Pytest plugin: one real Supabase-compatible stack (Postgres + PostgREST) per test session.

A missing PostgreSQL or PostgREST fails the tests that need them, saying what to install: nothing
is skipped, so a CI image without them cannot pass by testing nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from shared.config import Settings
from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase
from tests.supabase_stack import StackUnavailable, SupabaseStack


@pytest.fixture(scope="session")
def supabase_stack() -> Iterator[SupabaseStack]:
    """The running stack: ``.url``, ``.service_role_key``, ``.anon_key``, ``.psql()``,
    ``.stop_postgres()``/``.start_postgres()``."""
    try:
        stack = SupabaseStack()
    except StackUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    with stack:
        yield stack


@pytest.fixture
def supabase_tenant_store(supabase_stack: SupabaseStack) -> Iterator[SupabaseTenantStore]:
    """A service-role store on the stack, as a worker builds it (30 s key cache)."""
    client = connect_supabase(
        supabase_stack.url, supabase_stack.service_role_key, plain_postgrest=True
    )
    store = SupabaseTenantStore(client, cache_ttl_s=30)
    yield store
    store.close()


def on_supabase(settings: Settings, stack: SupabaseStack, **changes: object) -> Settings:
    """``settings`` pointed at the stack, as a worker configured for Supabase reads them."""
    return settings.model_copy(
        update={
            "tenant_store": "supabase",
            "supabase_url": stack.url,
            "supabase_service_role_key": SecretStr(stack.service_role_key),
            "supabase_plain_postgrest": True,
            **changes,
        }
    )
