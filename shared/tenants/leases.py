"""Limits off the hot path: a worker leases a small allowance per tenant and spends it locally.

``authorize`` asks the database for a lease of up to R requests and C characters (one call,
``lease_allowance``), reserved under the same sliding windows and monthly quota as a direct
authorization, then admits the tenant's next jobs from memory until the lease is spent or its
T seconds are up. Renewing settles the old lease in the same call, so what this worker did not
spend is back before it asks again; a lease that runs out of time is returned by a background
thread, and ``close`` returns the rest. A job of more than C characters is authorized directly.
With W workers holding leases for one tenant:

- **No overshoot.** Every admitted job was reserved in the database first, by the checks
  ``authorize`` makes. A reserved request is logged at the lease's end (re-stamped when the lease
  is settled, which follows its use), never before it runs, so every sliding window counts at
  least the requests really made in it; characters count in the month when reserved. (As today,
  while the database is unreachable the store's outage policy admits recently authenticated
  tenants unchecked.)
- **Under-admission, at most:** (W - 1) x (R - 1) requests of a window and (W - 1) x C characters
  of the quota, reserved by other workers and not yet spent, each for at most T seconds. And a
  spent request counts in the windows up to T seconds longer than its real time, so a refusal's
  retry-after can be up to T seconds longer than exact. Refusals keep their codes and messages.
- **Deactivation and new limits** reach another worker's lease within T seconds (at most R - 1
  more jobs there); in this worker at once. Leases are per tenant id, never per key: a rotated
  key stops at ``authenticate``, within the auth cache's TTL, as before.
- **A worker killed while holding a lease** leaves it counted as spent: its requests leave the
  windows on their own, its unspent characters (at most C) stay charged for the month.

Usage rows are untouched by any of this: one per job, written by the ``UsageWriter``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from shared.tenants.base import (
    AllowanceLease,
    DailyUsage,
    IssuedKey,
    LeaseTerms,
    LeasingStore,
    SpentLease,
    Tenant,
    TenantLimits,
    UsageRecord,
)
from shared.tenants.decisions import check_chars, check_lease
from shared.tenants.usage import RETRIED_ERRORS
from shared.tenants.voices import VoiceChanges, VoiceFields, VoiceRecord

_log = logging.getLogger(__name__)
_RETRY_INITIAL_S = 0.2
_RETRY_MAX_S = 5.0


@dataclass(eq=False)
class _Held:
    """A lease this worker spends from, and how much of it is spent."""

    lease: AllowanceLease
    # time.monotonic() when it may no longer be spent: measured from before the lease was asked
    # for, so it passes no later than the end the database stamped its requests at.
    deadline: float
    requests: int = 0
    chars: int = 0

    def fits(self, chars: int, now: float) -> bool:
        return (
            now < self.deadline
            and self.requests < self.lease.requests
            and self.chars + chars <= self.lease.chars
        )

    def spent(self) -> SpentLease:
        return SpentLease(self.lease, self.requests, self.chars)

    def spend(self, chars: int) -> Tenant:
        self.requests += 1
        self.chars += chars
        return self.lease.tenant


class _Slot:
    """One tenant's lease in this worker; its lock makes a job's check and spend one step, and
    makes the tenant's other jobs wait for a renewal under way instead of asking again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: _Held | None = None


class LeasingTenantStore:
    """A ``TenantStore`` whose ``authorize`` spends leases of ``inner``; everything else is
    ``inner``'s. Thread-safe."""

    def __init__(self, inner: LeasingStore, *, requests: int, chars: int, ttl_s: float) -> None:
        self._terms = LeaseTerms(requests=requests, chars=chars, need_chars=0, ttl_s=ttl_s)
        check_lease(self._terms)
        self._inner = inner
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._returner = _Returner(inner)

    def authorize(self, tenant_id: str, chars: int) -> Tenant:
        check_chars(chars)
        if chars > self._terms.chars:
            return self._inner.authorize(tenant_id, chars)
        slot = self._slot(tenant_id)
        with slot.lock:
            held = slot.held
            if held is not None and held.fits(chars, time.monotonic()):
                return held.spend(chars)
            slot.held = None  # spent, short or out of time: the renewal below settles it
            started = time.monotonic()
            settle = None if held is None else held.spent()
            terms = replace(self._terms, need_chars=chars)
            try:
                lease = self._inner.lease_allowance(tenant_id, terms, settle)
            except RETRIED_ERRORS:
                self._returner.give_back(held)
                return self._inner.authorize(tenant_id, chars)  # the store's outage policy
            except BaseException:
                self._returner.give_back(held)
                raise
            fresh = _Held(lease, deadline=started + self._terms.ttl_s)
            slot.held = fresh
            self._returner.watch(slot, fresh)
            return fresh.spend(chars)

    def authenticate(self, api_key: str) -> Tenant:
        return self._inner.authenticate(api_key)

    def create_tenant(self, name: str, limits: TenantLimits | None = None) -> IssuedKey:
        return self._inner.create_tenant(name, limits)

    def get_tenant(self, tenant_id: str) -> Tenant:
        return self._inner.get_tenant(tenant_id)

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        tenant = self._inner.set_active(tenant_id, active)
        self._forget(tenant_id)
        return tenant

    def rotate_key(self, tenant_id: str) -> IssuedKey:
        return self._inner.rotate_key(tenant_id)

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant:
        tenant = self._inner.set_limits(tenant_id, limits)
        self._forget(tenant_id)
        return tenant

    def set_engine_order(self, tenant_id: str, order: Sequence[str] | None) -> Tenant:
        return self._inner.set_engine_order(tenant_id, order)

    def list_tenants(self) -> Sequence[Tenant]:
        return self._inner.list_tenants()

    def find_by_name(self, name: str) -> Tenant | None:
        return self._inner.find_by_name(name)

    def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        self._inner.write_usage(rows)

    def usage_by_day(self, tenant_id: str, days: int = 30) -> Sequence[DailyUsage]:
        return self._inner.usage_by_day(tenant_id, days)

    def usage_between(self, tenant_id: str, start: date, end: date) -> Sequence[DailyUsage]:
        return self._inner.usage_between(tenant_id, start, end)

    def create_voice(self, tenant_id: str, voice: VoiceFields) -> VoiceRecord:
        return self._inner.create_voice(tenant_id, voice)

    def list_voices(self, tenant_id: str) -> Sequence[VoiceRecord]:
        return self._inner.list_voices(tenant_id)

    def get_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._inner.get_voice(tenant_id, voice_id)

    def update_voice(self, tenant_id: str, voice_id: str, changes: VoiceChanges) -> VoiceRecord:
        return self._inner.update_voice(tenant_id, voice_id, changes)

    def delete_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._inner.delete_voice(tenant_id, voice_id)

    def close(self) -> None:
        """Return every lease (once each; one the database refuses now stays counted as
        spent), then close ``inner``."""
        left = self._returner.close()
        with self._slots_lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                if slot.held is not None:
                    left.append(slot.held)
                    slot.held = None
        for held in left:
            _return_once(self._inner, held)
        self._inner.close()

    def _slot(self, tenant_id: str) -> _Slot:
        with self._slots_lock:
            return self._slots.setdefault(tenant_id, _Slot())

    def _forget(self, tenant_id: str) -> None:
        """The tenant changed here: its next job asks the database again."""
        slot = self._slot(tenant_id)
        with slot.lock:
            held, slot.held = slot.held, None
        self._returner.give_back(held)


class _Returner:
    """One thread that returns leases off the jobs' path: each as soon as its time is up (so
    another worker can spend what it did not), and those handed over; a return that fails for a
    passing reason is retried with backoff."""

    def __init__(self, store: LeasingStore) -> None:
        self._store = store
        self._wake = threading.Condition()
        self._watched: list[tuple[float, int, _Slot, _Held]] = []  # a heap by deadline
        self._order = itertools.count()
        self._handed: list[_Held] = []
        self._failing: list[_Held] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lease-returner", daemon=True)
        self._thread.start()

    def watch(self, slot: _Slot, held: _Held) -> None:
        with self._wake:
            heapq.heappush(self._watched, (held.deadline, next(self._order), slot, held))
            self._wake.notify()

    def give_back(self, held: _Held | None) -> None:
        """Return ``held`` soon. Also for a lease a failed renewal may or may not have settled:
        returning is idempotent."""
        if held is None:
            return
        with self._wake:
            self._handed.append(held)
            self._wake.notify()

    def close(self) -> list[_Held]:
        """Stop the thread; the leases it still had to return."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=30)
        with self._wake:
            left, self._handed, self._failing = self._handed + self._failing, [], []
        return left

    def _run(self) -> None:
        delay = _RETRY_INITIAL_S
        retry_at = 0.0
        while True:
            with self._wake:
                expired, handed = self._due_or_wait(retry_at)
                if self._stopping:
                    return
            # A job holding the slot's lock may be spending or renewing this lease: taken here
            # only if it is still the slot's, so exactly one side settles it.
            for slot, held in expired:
                with slot.lock:
                    if slot.held is held:
                        slot.held = None
                        handed.append(held)
            failed = [held for held in handed if not self._return(held)]
            with self._wake:
                self._failing.extend(failed)
            if failed:
                retry_at = time.monotonic() + delay
                delay = min(delay * 2, _RETRY_MAX_S)
            elif not self._failing:
                delay = _RETRY_INITIAL_S

    def _due_or_wait(self, retry_at: float) -> tuple[list[tuple[_Slot, _Held]], list[_Held]]:
        """Wait (holding ``_wake``) until something is due; take it."""
        while not self._stopping:
            now = time.monotonic()
            expired = []
            while self._watched and self._watched[0][0] <= now:
                _, _, slot, held = heapq.heappop(self._watched)
                expired.append((slot, held))
            handed, self._handed = self._handed, []
            if self._failing and retry_at <= now:
                handed, self._failing = handed + self._failing, []
            if expired or handed:
                return expired, handed
            waits = [self._watched[0][0]] if self._watched else []
            waits += [retry_at] if self._failing else []
            self._wake.wait(min(waits) - now if waits else None)
        return [], []

    def _return(self, held: _Held) -> bool:
        """False when it should be tried again later."""
        try:
            self._store.return_allowance(held.spent())
        except RETRIED_ERRORS as exc:
            _log.warning("returning lease %s failed (%s); retrying", held.lease.id, exc)
            return False
        except Exception:
            _log.exception("lease %s refused on return; its allowance stays spent", held.lease.id)
        return True


def _return_once(store: LeasingStore, held: _Held) -> None:
    try:
        store.return_allowance(held.spent())
    except Exception:
        _log.exception("lease %s not returned; its allowance stays spent", held.lease.id)
