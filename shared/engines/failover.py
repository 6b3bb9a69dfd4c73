"""Per-engine guards: a circuit breaker (pybreaker) and bounded retries (tenacity) around a call.

An engine that keeps failing is skipped while its breaker is open, so a job goes straight to the
next engine in its order instead of waiting on a dead vendor; once the open time has passed, one
job probes it, and a success closes the breaker again.

pybreaker's ``call`` holds the breaker's lock for the whole call, which would serialize every
job of an engine; so the work runs outside it (admission is checked first, one probe at a time)
and only its outcome goes through ``breaker.call``, which keeps the state machine, the failure
count and the listeners pybreaker's own.

Retries are for one engine only and only for a ``VendorError`` that says another attempt may
help (never 400/401/403/422): waiting what the vendor's ``Retry-After`` asks, else exponential
backoff, and never longer than ``retry_max_wait_s`` (a vendor asking more is failed over now).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import pybreaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential

from shared.engines.render_stream import RenderCancelled
from shared.engines.vendors.errors import VendorError
from shared.errors import EngineUnavailable, TTSError

T = TypeVar("T")
_log = logging.getLogger(__name__)
CLOSED, HALF_OPEN, OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_HALF_OPEN, pybreaker.STATE_OPEN
# Called with (engine name, new state) on every breaker transition (the metrics gauge).
StateListener = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """``breaker_failures`` failed calls in a row open an engine's breaker for
    ``breaker_open_s``; one engine call is tried at most ``retry_attempts`` times."""

    breaker_failures: int = 5
    breaker_open_s: float = 30.0
    retry_attempts: int = 3
    retry_backoff_s: float = 0.2
    retry_max_wait_s: float = 2.0


class CircuitOpen(EngineUnavailable):
    """The engine is skipped: its breaker is open (or a probe of it is under way)."""

    reason = "circuit_open"


def failure_cause(error: BaseException) -> str:
    """A short, bounded name for why an engine failed (a metrics label, a fallback reason):
    an error's own ``reason`` where its class names one (``CircuitOpen``)."""
    reason = getattr(type(error), "reason", None)
    if isinstance(reason, str):
        return reason
    if isinstance(error, VendorError):
        return str(error.kind)
    if isinstance(error, TTSError):
        return error.code.value
    return "error"


def engine_failure(error: BaseException) -> bool:
    """Whether ``error`` is the engine's fault (it counts against its breaker and may fail
    over), not the caller's (a bad voice, text too long) nor a cancelled render."""
    if isinstance(error, RenderCancelled):
        return False
    if isinstance(error, TTSError):
        return isinstance(error, EngineUnavailable)
    return isinstance(error, Exception)


def _translated(engine: str, error: Exception) -> Exception:
    """An engine's own crash (not one of our errors) as ``EngineUnavailable``, so the job can
    fail over and its caller sees engine_unavailable rather than an internal error."""
    if isinstance(error, TTSError) or not engine_failure(error):
        return error
    _log.error("the %s engine raised", engine, exc_info=error)  # its traceback, once
    failed = EngineUnavailable(f"the {engine} engine failed ({type(error).__name__})")
    failed.__cause__ = error
    return failed


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_state: StateListener) -> None:
        self._on_state = on_state

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self._on_state(cb.name or "", new_state.name)


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class EngineGuard:
    """The breaker and the retry policy of one engine; every method is thread-safe."""

    def __init__(
        self,
        name: str,
        policy: FailoverPolicy,
        *,
        on_state: StateListener | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._policy = policy
        self._sleep = sleep
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=policy.breaker_failures,
            reset_timeout=policy.breaker_open_s,
            exclude=[lambda exc: not engine_failure(exc)],
            listeners=[_Listener(on_state)] if on_state is not None else [],
            name=name,
            throw_new_error_on_trip=False,  # the engine's own error, not pybreaker's
        )
        self._probe = threading.Lock()
        self._backoff = wait_exponential(
            multiplier=policy.retry_backoff_s, max=policy.retry_max_wait_s
        )

    @property
    def state(self) -> str:
        """closed, open, or half-open: open and its open time over, so the next call probes."""
        state = self._breaker.current_state
        if state == OPEN and self._open_time_over():
            return HALF_OPEN
        return state

    def admits(self) -> bool:
        """Whether a call now would reach the engine (closed, or due for a probe)."""
        return self.state != OPEN

    def run(self, work: Callable[[], T]) -> T:
        """``work`` (one engine call) under the breaker, retried within the policy's bounds."""
        retrying = Retrying(
            stop=stop_after_attempt(self._policy.retry_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._once, work)

    def record(self, error: BaseException | None) -> None:
        """Count the outcome of a call made outside ``run`` (a stream, read to its end); one
        ending while another call's failure holds the breaker open is not counted again."""
        try:
            self._report(_Outcome(error=error))
        except BaseException as exc:
            if exc is not error:
                raise

    def _once(self, work: Callable[[], T]) -> T:
        probing = self._admit()
        try:
            try:
                outcome = _Outcome(value=work())
            except Exception as exc:
                outcome = _Outcome(error=_translated(self.name, exc))
            return self._report(outcome)
        finally:
            if probing:  # after the report: the breaker has moved before another may probe
                self._probe.release()

    def _report(self, outcome: _Outcome[T]) -> T:
        """``outcome`` through the breaker: counted, and the state moved as pybreaker does."""
        try:
            return self._breaker.call(outcome.get)
        except pybreaker.CircuitBreakerError:
            # Another call's failure opened the breaker while this one ran: not counted again.
            return outcome.get()

    def _admit(self) -> bool:
        """True when this call is the probe of an open breaker; ``CircuitOpen`` when the
        engine is to be skipped."""
        if self._breaker.current_state == CLOSED:
            return False
        if not self._open_time_over():
            raise CircuitOpen(f"the {self.name} engine is failing: skipped while it recovers")
        if not self._probe.acquire(blocking=False):
            raise CircuitOpen(f"the {self.name} engine is being probed: skipped meanwhile")
        return True

    def _open_time_over(self) -> bool:
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None:
            return True
        return datetime.now(UTC) >= opened_at + timedelta(seconds=self._policy.breaker_open_s)

    def _retryable(self, error: BaseException) -> bool:
        if not isinstance(error, VendorError) or not error.retryable:
            return False
        after = error.retry_after_s
        return after is None or after <= self._policy.retry_max_wait_s

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        after = getattr(error, "retry_after_s", None)
        if after is not None:
            return float(after)
        return float(self._backoff(state))
