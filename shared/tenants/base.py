"""The tenant-store protocol: the embedded SQLite store and the Supabase store both implement it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    active: bool
    key_prefix: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly made API key: the only moment the plaintext exists outside the caller."""

    tenant: Tenant
    api_key: str


class TenantStore(Protocol):
    def authenticate(self, api_key: str) -> Tenant:
        """The active tenant owning ``api_key``; raise ``Unauthorized`` otherwise."""
        ...

    def create_tenant(self, name: str) -> IssuedKey: ...

    def set_active(self, tenant_id: str, active: bool) -> Tenant: ...

    def list_tenants(self) -> Sequence[Tenant]: ...

    def find_by_name(self, name: str) -> Tenant | None: ...

    def close(self) -> None: ...
