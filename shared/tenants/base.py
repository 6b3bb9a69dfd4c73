"""The tenant-store protocol: the embedded SQLite store and the Supabase store both implement it.

Auth is two steps with different costs: ``authenticate`` answers from an in-process cache when it
can (a warm job pays no round trip); ``authorize`` charges the tenant it found, by id: it applies
the sliding rate windows and the monthly quota atomically across every worker, and records an
allowed request.

Cloned voices are records of one tenant each: every voice method takes the tenant's id and
filters by it in the query itself, and another tenant's voice gets the same ``VoiceNotFound``
as one that does not exist (see ``shared.tenants.voices`` for the bounds and the version rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from shared.tenants.voices import VoiceChanges, VoiceFields, VoiceRecord


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """None means unlimited."""

    monthly_char_quota: int | None = 1_000_000
    requests_per_minute: int | None = 60
    requests_per_hour: int | None = 1_000
    max_voices: int | None = 10


UNLIMITED = TenantLimits(
    monthly_char_quota=None, requests_per_minute=None, requests_per_hour=None, max_voices=None
)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    active: bool
    key_prefix: str
    created_at: datetime
    limits: TenantLimits = field(default_factory=TenantLimits)
    # Engines to try, primary first (None: the worker's order).
    engine_order: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly made API key: the only moment the plaintext exists outside the caller."""

    tenant: Tenant
    api_key: str


@dataclass(frozen=True, slots=True)
class AllowanceLease:
    """Requests and characters of one tenant, reserved in the store for a worker to spend in
    its own memory (see ``shared.tenants.leases``)."""

    id: str
    tenant: Tenant
    requests: int
    chars: int


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """What a worker asks to lease: 1 to ``requests`` requests and ``need_chars`` (the job at
    hand's) to ``chars`` characters, for ``ttl_s`` seconds."""

    requests: int
    chars: int
    need_chars: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class SpentLease:
    """A lease handed back with what its worker spent of it."""

    lease: AllowanceLease
    requests: int
    chars: int


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One dispatched job, billed or not: exactly one row per (tenant_id, job_id).

    ``request_id`` comes from the client and may repeat; ``job_id`` is the server's own id for
    the job, so a reused request id still leaves one row per charged job, and a retried write of
    the same row never counts twice.
    """

    tenant_id: str
    request_id: str
    action: str
    created_at: datetime
    input_chars: int = 0
    audio_bytes: int = 0
    audio_seconds: float = 0.0
    latency_ms: float = 0.0
    engine: str | None = None
    voice: str | None = None
    format: str | None = None
    delivery: str | None = None
    cached: bool = False
    streaming: bool = False
    error_code: str | None = None
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    voice_version: str | None = None
    # Why ``engine`` answered instead of the tenant's primary (None: the primary did).
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DailyUsage:
    day: date
    requests: int
    failed: int
    input_chars: int
    audio_seconds: float
    audio_bytes: int


class TenantStore(Protocol):
    def authenticate(self, api_key: str) -> Tenant:
        """The active tenant owning ``api_key``; ``Unauthorized``, or ``AuthUnavailable`` when
        the database is unreachable and the key is not cached (fail closed)."""
        ...

    def authorize(self, tenant_id: str, chars: int) -> Tenant:
        """Charge one request of ``chars`` characters to an authenticated tenant, atomically
        across processes: ``Unauthorized`` when the id is unknown or the tenant inactive;
        ``RateLimited`` (with retry-after) or ``QuotaExceeded`` charge nothing."""
        ...

    def create_tenant(self, name: str, limits: TenantLimits | None = None) -> IssuedKey:
        """``InvalidInput`` for a name ``check_name`` refuses; ``Conflict`` when it is taken."""
        ...

    def get_tenant(self, tenant_id: str) -> Tenant:
        """The tenant with this id, active or not; ``NotFound`` otherwise."""
        ...

    def set_active(self, tenant_id: str, active: bool) -> Tenant: ...

    def rotate_key(self, tenant_id: str) -> IssuedKey:
        """A new key for the tenant; the old one stops working (within one cache TTL elsewhere)."""
        ...

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant: ...

    def set_engine_order(self, tenant_id: str, order: Sequence[str] | None) -> Tenant:
        """The engines the tenant's jobs try, primary first (None: the worker's order);
        ``InvalidInput`` for a name ``check_engine_order`` refuses."""
        ...

    def list_tenants(self) -> Sequence[Tenant]: ...

    def find_by_name(self, name: str) -> Tenant | None: ...

    def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        """Insert rows, ignoring any (tenant_id, job_id) already there. ``AuthUnavailable`` when
        the failure passes (the writer retries), ``InternalError`` when a row is refused."""
        ...

    def usage_by_day(self, tenant_id: str, days: int = 30) -> Sequence[DailyUsage]:
        """Daily totals, oldest first; ``NotFound`` for an unknown tenant."""
        ...

    def usage_between(self, tenant_id: str, start: date, end: date) -> Sequence[DailyUsage]:
        """Daily totals of the UTC days ``start`` to ``end``, both included, oldest first (days
        without jobs are left out); ``NotFound`` for an unknown tenant."""
        ...

    def create_voice(self, tenant_id: str, voice: VoiceFields) -> VoiceRecord:
        """A new voice with a server-drawn id (a minted version unless one is given), within
        the tenant's ``max_voices`` atomically across workers: ``QuotaExceeded`` at the limit.
        ``InvalidInput`` before any query; ``NotFound`` for an unknown tenant, ``Unauthorized``
        for a disabled one."""
        ...

    def list_voices(self, tenant_id: str) -> Sequence[VoiceRecord]:
        """The tenant's voices, oldest first; ``NotFound`` for an unknown tenant."""
        ...

    def get_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        """``VoiceNotFound`` when the tenant has no voice with this id."""
        ...

    def update_voice(self, tenant_id: str, voice_id: str, changes: VoiceChanges) -> VoiceRecord:
        """Change only the fields given (None clears an optional one) and bump ``updated_at``;
        nothing given returns the voice as it is. New latents without a version mint one.
        ``InvalidInput`` before any query; ``VoiceNotFound`` as ``get_voice``."""
        ...

    def delete_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        """Remove the voice and return it, so the caller can delete its objects;
        ``VoiceNotFound`` as ``get_voice``."""
        ...

    def close(self) -> None: ...


class LeasingStore(TenantStore, Protocol):
    """A store that can also lease allowance: both stores are one."""

    def lease_allowance(
        self, tenant_id: str, terms: LeaseTerms, settle: SpentLease | None = None
    ) -> AllowanceLease:
        """Reserve what ``terms`` asks for in one atomic step under the limits ``authorize``
        applies, refusing as it does (same errors, retry-after and used counts) when not even
        one request of ``need_chars`` fits; ``InvalidInput`` (``check_lease``) before any query.
        ``settle`` is returned first in the same step, and stays returned whatever the answer."""
        ...

    def return_allowance(self, spent: SpentLease) -> None:
        """Give back what ``spent.lease`` did not spend. Idempotent: a lease returned (or settled)
        already is left alone, so a retried return never refunds twice."""
        ...
