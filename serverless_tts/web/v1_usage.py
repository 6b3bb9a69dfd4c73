"""``/v1/tenant/usage``: a tenant's daily usage over a range of UTC days, with its totals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from serverless_tts.web.v1_models import UsageDay, UsageReport, UsageTotals
from shared.errors import InvalidInput
from shared.tenants.base import DailyUsage

DEFAULT_DAYS = 30
# A year, leap day included: enough for any yearly report, little enough to answer at once.
MAX_DAYS = 366


def usage_range(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The days asked for: by default the last ``DEFAULT_DAYS`` up to ``end`` (today)."""
    end = end or today
    if start is None:  # no earlier than the first day there is
        start = end - timedelta(days=min(DEFAULT_DAYS - 1, end.toordinal() - 1))
    if end < start:
        raise InvalidInput("end_date: must not be before start_date")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(f"the range covers more than {MAX_DAYS} days; ask for less")
    return start, end


def usage_report(tenant_id: str, start: date, end: date, days: Sequence[DailyUsage]) -> UsageReport:
    rows = [UsageDay.model_validate(day) for day in days]
    totals = UsageTotals(
        requests=sum(day.requests for day in rows),
        failed=sum(day.failed for day in rows),
        input_chars=sum(day.input_chars for day in rows),
        audio_seconds=sum(day.audio_seconds for day in rows),
        audio_bytes=sum(day.audio_bytes for day in rows),
    )
    return UsageReport(
        tenant_id=tenant_id, start_date=start, end_date=end, days=rows, totals=totals
    )
