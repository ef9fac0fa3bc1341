"""A real PostgreSQL for the tests: Debian's server binaries, initdb + pg_ctl in a temporary directory,
listening on 127.0.0.1 only, password (SCRAM) authentication for TCP clients.

Run as root (CI, the dev machine) the cluster belongs to the `postgres` user, since initdb refuses root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "optuna"
DATABASE = "optuna"


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    database: str
    password: str

    @property
    def url(self) -> str:
        """The storage URL a user configures: no password in it (that comes from the environment)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise RuntimeError(f"{name} not found: run `make sysdeps` (scripts/sysdeps.sh installs postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _accepting(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@contextlib.contextmanager
def postgres() -> Iterator[Server]:
    """Start a fresh cluster; yield how to reach it; stop it and delete its files."""
    root = Path(tempfile.mkdtemp(prefix="kabuflow-pg-"))
    password = secrets.token_urlsafe(18)
    (root / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    data, port = root / "data", _free_port()
    init = [_bin("initdb"), "-D", str(data), "-U", USER, "--pwfile", str(root / "pw"), "--auth=scram-sha-256"]
    subprocess.run(_as_owner([*init, "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50"
    ctl = [_bin("pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts]
    subprocess.run(_as_owner([*ctl, "-w", "start"]), check=True, capture_output=True)
    try:
        for _ in range(300):  # pg_ctl -w waits for the socket; the TCP port follows at once
            if _accepting("127.0.0.1", port):
                break
            time.sleep(0.05)
        server = Server("127.0.0.1", port, USER, DATABASE, password)
        _create_database(server)
        yield server
    finally:
        subprocess.run(_as_owner([*ctl, "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _create_database(server: Server) -> None:
    import psycopg

    dsn = dict(host=server.host, port=server.port, user=server.user, password=server.password)
    with psycopg.connect(dbname="postgres", autocommit=True, **dsn) as conn:
        conn.execute(f'CREATE DATABASE "{server.database}"')
