"""The refusals both stores give, worded once, so clients see one message per limit."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from shared.errors import Conflict, InvalidInput, QuotaExceeded, RateLimited
from shared.tenants.base import LeaseTerms

MAX_NAME_CHARS = 200
_NAME_RULE = (
    f"use 1-{MAX_NAME_CHARS} characters, not only whitespace, and no control characters"
    " (newlines and tabs included)"
)
MAX_ENGINE_ORDER = 8
# As lease_allowance's bound in supabase/migrations/.
MAX_LEASE_TTL_S = 3600
_ENGINE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_chars(chars: int) -> None:
    if chars < 0:
        raise InvalidInput("character count must not be negative")


def check_lease(terms: LeaseTerms) -> None:
    """A lease holds at least one request, room for the job at hand, for a bounded time."""
    check_chars(terms.need_chars)
    if terms.requests < 1:
        raise InvalidInput("a lease holds at least one request")
    if terms.chars < terms.need_chars:
        raise InvalidInput("a lease must hold at least the characters of the job at hand")
    if not 0 < terms.ttl_s <= MAX_LEASE_TTL_S:
        raise InvalidInput(f"a lease lasts more than 0 and at most {MAX_LEASE_TTL_S} s")


def check_name(name: str) -> None:
    """A tenant name is shown on one line in listings and logs; refuse what would break that
    instead of silently changing it."""
    if not name.strip():
        raise InvalidInput(f"a tenant name must not be empty or only whitespace: {_NAME_RULE}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"a tenant name of {len(name)} characters is too long: {_NAME_RULE}")
    bad = next((c for c in name if unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise InvalidInput(
            f"a tenant name must not contain the control character U+{ord(bad):04X}: {_NAME_RULE}"
        )


def name_taken(name: str) -> Conflict:
    return Conflict(f"a tenant named {name!r} already exists")


def rate_limited(window: str, limit: int | None, retry_after_s: int) -> RateLimited:
    """``window`` is "per-minute" or "per-hour"."""
    return RateLimited(f"{window} limit of {limit} requests reached", retry_after_s)


def quota_exceeded(chars: int, used: int, quota: int | None) -> QuotaExceeded:
    return QuotaExceeded(
        f"{chars} characters would exceed the monthly quota ({used} of {quota} used)"
    )


def check_engine_order(order: Sequence[str] | None) -> tuple[str, ...] | None:
    """A tenant's engine order as stored: names of engines (``xtts``, ``elevenlabs``...), each
    once, at most ``MAX_ENGINE_ORDER``; None or empty is the worker's own order. Engines a
    worker has not loaded are skipped when a job runs, so the names are not checked here."""
    if not order:
        return None
    if len(order) > MAX_ENGINE_ORDER:
        raise InvalidInput(f"an engine order names at most {MAX_ENGINE_ORDER} engines")
    for name in order:
        if not _ENGINE_NAME.fullmatch(name):
            raise InvalidInput(f"{name!r} is not an engine name (lowercase letters, digits, _ -)")
    if len(set(order)) != len(order):
        raise InvalidInput("an engine order names each engine once")
    return tuple(order)
