"""Fixed rate windows and calendar months, shared by the stores so both count the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MINUTE_S = 60
HOUR_S = 3600


def window_start(now: datetime, length_s: int) -> int:
    """Epoch second at which the fixed window containing ``now`` began."""
    epoch = int(now.timestamp())
    return epoch - epoch % length_s


def retry_after_s(now: datetime, length_s: int) -> int:
    """Whole seconds until the window containing ``now`` ends; at least 1."""
    end = window_start(now, length_s) + length_s
    return max(1, int(end - now.timestamp() + 0.999))


def month_key(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def days_ago(now: datetime, days: int) -> datetime:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start - timedelta(days=days - 1)
