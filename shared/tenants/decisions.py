"""The refusals both stores give, worded once, so clients see one message per limit."""

from __future__ import annotations

from shared.errors import InvalidInput, QuotaExceeded, RateLimited


def check_chars(chars: int) -> None:
    if chars < 0:
        raise InvalidInput("character count must not be negative")


def rate_limited(window: str, limit: int | None, retry_after_s: int) -> RateLimited:
    """``window`` is "per-minute" or "per-hour"."""
    return RateLimited(f"{window} limit of {limit} requests reached", retry_after_s)


def quota_exceeded(chars: int, used: int, quota: int | None) -> QuotaExceeded:
    return QuotaExceeded(
        f"{chars} characters would exceed the monthly quota ({used} of {quota} used)"
    )
