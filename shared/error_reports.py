"""The worker's optional error reports to Sentry (``SENTRY_DSN``): the edge's scrubbed client
(``edge.error_reports``), plus the tenant of a job that failed unexpectedly.

How the tenant gets there: the dispatcher logs such a failure with its traceback and, next, on
the same thread, the job's event, which carries ``tenant_id``. So its error is not reported as
it is logged: it waits on its thread for that event and is reported then, tagged with the
job's ``tenant_id``, ``action``, ``engine``, ``error_code`` and ``job_id`` (never its text,
which the event does not carry). With the job events not logged (a level above INFO), or a
second error first, it goes at once, untagged. Every other error logged at ERROR goes as it is
logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping

import sentry_sdk
from sentry_sdk.transport import Transport

from edge.error_reports import init_error_reports, tagged
from shared.telemetry import JOB_LOGGER

DISPATCH_LOGGER = "handlers.dispatch"
TAGS = ("tenant_id", "action", "engine", "error_code", "job_id")


def init_worker_error_reports(
    environ: Mapping[str, str] | None = None, *, transport: Transport | None = None
) -> bool:
    """Start the reports once per process if ``SENTRY_DSN`` is set (the entry points call it);
    whether they are on."""
    if not init_error_reports(environ, transport=transport, ignore=(DISPATCH_LOGGER,)):
        return False
    for name in (DISPATCH_LOGGER, JOB_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, JobFailures) for handler in logger.handlers):
            logger.addHandler(JOB_FAILURES)
    return True


class JobFailures(logging.Handler):
    """Pairs the dispatcher's error with the job event that follows it on its thread."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == DISPATCH_LOGGER:
            if record.levelno >= logging.ERROR:
                self._report({})  # one left waiting goes first, untagged
                self._pending.record = record
                if not logging.getLogger(JOB_LOGGER).isEnabledFor(logging.INFO):
                    self._report({})
            return
        if getattr(self._pending, "record", None) is None:
            return
        try:
            job = json.loads(record.getMessage())
        except ValueError:
            return
        if isinstance(job, dict) and job.get("event") == "job":
            self._report({name: str(job[name]) for name in TAGS if job.get(name) is not None})

    def _report(self, tags: dict[str, str]) -> None:
        record: logging.LogRecord | None = getattr(self._pending, "record", None)
        self._pending.record = None
        if record is None:
            return
        with tagged(**tags):
            if record.exc_info and record.exc_info[0] is not None:
                sentry_sdk.capture_exception(record.exc_info)
            else:
                sentry_sdk.capture_message(str(record.msg), level="error")


JOB_FAILURES = JobFailures()
