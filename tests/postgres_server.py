"""A throwaway PostgreSQL server for the tests, from Debian's binaries (no Docker, no service).

`PostgresServer.start()` runs `initdb` in a fresh temporary directory and `pg_ctl start` on a
free loopback port, with a password (SCRAM) for TCP logins as a real deployment has. initdb and
the server refuse to run as root, so under root (CI) they run as the unprivileged `nobody`,
which owns the directory. The migrated template database is made once; each test gets its own
database copied from it (`CREATE DATABASE ... TEMPLATE`, a file copy), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

USER = "biagent"
PASSWORD = "s3cret-test-pässword"
TEMPLATE = "biagent_template"
UNPRIVILEGED = "nobody"


def postgres_bindir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/N/bin holding initdb, else initdb on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="biagent-pg-")))
    port: int = field(default_factory=_free_port)
    _run_as: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if os.geteuid() == 0:  # initdb: "cannot be run as root"
            account = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        password_file = self.root / "password"
        password_file.write_text(PASSWORD, encoding="utf-8")
        if self._run_as:
            os.chown(password_file, self._run_as["user"], self._run_as["group"])
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300"
        )
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options,
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(
            [str(self.bindir / program), *arguments],
            check=True,
            capture_output=True,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            **self._run_as,
        )

    def log_text(self) -> str:
        path = self.root / "server.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    # -- databases -----------------------------------------------------------------------

    def admin(self, statement: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(statement)

    def make_template(self) -> None:
        """The template every test database copies: migrated by the code under test."""
        from storage.database import Database

        self.admin(f"CREATE DATABASE {TEMPLATE}")

        async def migrate() -> None:
            database = await Database.open(self.url(TEMPLATE))
            try:
                await database.migrate()
            finally:
                await database.close()

        # in a thread of its own: the first test to need the server may be inside a running loop
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, migrate()).result()

    def fresh_database(self, *, migrated: bool = True) -> str:
        """A new database (a copy of the migrated template, or empty); returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        template = TEMPLATE if migrated else "template0"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
