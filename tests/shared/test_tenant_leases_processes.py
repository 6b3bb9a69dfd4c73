"""Several worker processes, each a real worker (``build_worker``: Supabase store with leases,
real Piper), hold one tenant to its limit against the real Postgres + PostgREST stack, within the
under-admission ``shared.tenants.leases`` states and with no overshoot.

Run as a module (``python -m tests.shared.test_tenant_leases_processes READY GO JOBS``), this
file is one such worker: it builds itself, says it is ready, waits for the go, runs its jobs and
prints what it was answered.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.tenants.base import TenantLimits
from shared.tenants.supabase_store import SupabaseTenantStore
from tests.processes import clean_env, run_python
from tests.supabase_stack import SupabaseStack

WORKERS = 3  # each loads a whole worker: startup is most of the test's time
JOBS_EACH = 30
LIMIT = 20
LEASE_REQUESTS = 3
LEASE_TTL_S = 10
_MODULE = "tests.shared.test_tenant_leases_processes"


def test_worker_processes_hold_a_tenant_to_its_limit_within_the_stated_bound(
    tmp_path: Path, supabase_stack: SupabaseStack, supabase_tenant_store: SupabaseTenantStore
) -> None:
    # The hour's limit too, so a slow run cannot let a second minute's worth through.
    limits = TenantLimits(
        monthly_char_quota=None, requests_per_minute=LIMIT, requests_per_hour=LIMIT
    )
    issued = supabase_tenant_store.create_tenant(f"racers-{uuid.uuid4().hex[:12]}", limits)
    tenant_id = issued.tenant.id
    go = tmp_path / "go"

    def worker(index: int) -> dict[str, object]:
        env = clean_env(tmp_path / f"worker-{index}")
        env.update(
            {
                "TTS_TENANT_STORE": "supabase",
                "SUPABASE_URL": supabase_stack.url,
                "SUPABASE_SERVICE_ROLE_KEY": supabase_stack.service_role_key,
                "TTS_SUPABASE_PLAIN_POSTGREST": "true",
                "TTS_LEASE_REQUESTS": str(LEASE_REQUESTS),
                "TTS_LEASE_CHARS": "1000",
                "TTS_LEASE_TTL_S": str(LEASE_TTL_S),
                "LEASE_TEST_API_KEY": issued.api_key,
            }
        )
        ready = tmp_path / f"ready-{index}"
        done = run_python(env, "-m", _MODULE, str(ready), str(go), str(JOBS_EACH), timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        running = [pool.submit(worker, index) for index in range(WORKERS)]
        deadline = time.monotonic() + 240
        while not all((tmp_path / f"ready-{index}").exists() for index in range(WORKERS)):
            assert time.monotonic() < deadline, "the workers did not start"
            assert not any(future.done() for future in running), running[0].result()
            time.sleep(0.1)
        go.touch()
        answers = [future.result() for future in running]

    admitted = sum(int(str(answer["admitted"])) for answer in answers)
    refused = [retry for answer in answers for retry in answer["refused"]]  # type: ignore[attr-defined]
    assert [answer["errors"] for answer in answers] == [[]] * WORKERS
    assert admitted + len(refused) == WORKERS * JOBS_EACH
    # No overshoot; under-admission at most (W - 1) x (R - 1): what other workers held unspent.
    assert LIMIT - (WORKERS - 1) * (LEASE_REQUESTS - 1) <= admitted <= LIMIT, answers
    # Entries are never stamped before their use, and at most a lease's TTL after it.
    assert all(1 <= retry <= 3600 + LEASE_TTL_S for retry in refused), refused
    # Every worker returned its leases on close: the database counts exactly what ran, and
    # holds one usage row per job, refused ones included.
    psql = supabase_stack.psql
    logged = psql(f"select count(*) from request_log where tenant_id = '{tenant_id}'")
    counted = psql(f"select requests from monthly_usage where tenant_id = '{tenant_id}'")
    assert (int(logged), int(counted)) == (admitted, admitted)
    assert psql(f"select count(*) from allowance_leases where tenant_id = '{tenant_id}'") == "0"
    usage = psql(
        "select count(*) filter (where error_code is null) || ',' || count(*)"
        f" from usage_logs where tenant_id = '{tenant_id}'"
    )
    assert usage == f"{admitted},{WORKERS * JOBS_EACH}"


def _child(ready: Path, go: Path, jobs: int) -> None:
    """One worker process: build, say ready, wait for the go, run ``jobs`` synthesize jobs."""
    from serverless_tts.runpod_shapes import run_job
    from shared.config import Settings
    from shared.errors import ErrorCode, TTSError
    from shared.worker import build_worker

    worker = build_worker(Settings())
    api_key = os.environ["LEASE_TEST_API_KEY"]
    admitted, refused, errors = 0, [], []
    try:
        ready.touch()
        deadline = time.monotonic() + 240
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        for n in range(jobs):
            job = {"api_key": api_key, "text": "Hold me to my limit.", "request_id": f"j{n}"}
            try:
                run_job(job, worker)
            except TTSError as exc:
                if exc.code != ErrorCode.RATE_LIMITED:
                    errors.append(repr(exc))
                refused.append(getattr(exc, "retry_after_s", 0))
            else:
                admitted += 1
    finally:
        worker.close()
    print(json.dumps({"admitted": admitted, "refused": refused, "errors": errors}))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
