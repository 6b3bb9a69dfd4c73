"""Sliding rate windows and calendar months, shared by the stores so both count the same way.

A window of length L allows a request at ``now`` when fewer than N requests were recorded in
(now - L, now]: at most N in ANY L seconds, where fixed windows let up to 2N through across
a boundary. Times are whole epoch microseconds, so the arithmetic is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MINUTE_S = 60
HOUR_S = 3600
US_PER_S = 1_000_000
# Entries older than the longest window are never read again.
KEPT_S = HOUR_S
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def retry_after_s(nth_newest_us: int, length_s: int, now_us: int) -> int:
    """Whole seconds (at least 1) until the N-th newest request in the window leaves it, which
    makes room for one more."""
    wait_us = nth_newest_us + length_s * US_PER_S - now_us
    return max(1, -(-wait_us // US_PER_S))


def month_key(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def days_ago(now: datetime, days: int) -> datetime:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start - timedelta(days=days - 1)
