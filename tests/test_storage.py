"""storage.py against real servers on 127.0.0.1: SeaweedFS (S3 API) and fake-gcs-server (GCS JSON API)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from servers import LoopbackServer, SilentServer, free_port, pipe

from kabuflow import storage
from kabuflow.config import StorageConfig
from kabuflow.manifest import ArtifactError, seal

MB = 1024 * 1024


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """50 MB of incompressible bytes and their SHA-256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(50 * MB)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class Exploding(io.RawIOBase):
    """A source stream that yields `limit` bytes and then fails, like a producer crashing mid-upload."""

    def __init__(self, limit: int):
        self.left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.left <= 0:
            raise RuntimeError("source failed mid-upload")
        n = min(len(buf), self.left)
        buf[:n] = b"x" * n
        self.left -= n
        return n


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _roundtrip_big(root: str, big_file, tmp_path: Path) -> None:
    path, sha = big_file
    uri = storage.join(root, "rt", "big.bin")
    storage.put_file(path, uri)
    back = storage.get_file(uri, tmp_path / "back.bin")
    assert back.stat().st_size == 50 * MB
    assert _sha(back) == sha


def _listing(root: str) -> None:
    for name in ("a/1.txt", "a/2.txt", "a/sub/3.txt", "ab/4.txt", "b/5.txt"):
        storage.write_bytes(storage.join(root, "ls", name), name.encode())
    assert storage.list(storage.join(root, "ls", "a") + "/") == [
        storage.join(root, "ls", n) for n in ("a/1.txt", "a/2.txt", "a/sub/3.txt")
    ]
    assert len(storage.list(storage.join(root, "ls", "a"))) == 4  # a plain prefix also matches ab/
    assert storage.read_bytes(storage.join(root, "ls", "a/sub/3.txt")) == b"a/sub/3.txt"
    assert storage.exists(storage.join(root, "ls", "b/5.txt"))
    assert not storage.exists(storage.join(root, "ls", "b/6.txt"))
    with pytest.raises(FileNotFoundError, match="ls/b/6.txt"):
        storage.read_bytes(storage.join(root, "ls", "b/6.txt"))


def _failed_upload_is_invisible(root: str, size: int) -> None:
    fresh, kept = storage.join(root, "fail", f"fresh-{size}"), storage.join(root, "fail", f"kept-{size}")
    storage.write_bytes(kept, b"previous version")
    for uri in (fresh, kept):
        with pytest.raises(RuntimeError, match="source failed mid-upload"):
            storage.write_stream(uri, io.BufferedReader(Exploding(size)))
    assert not storage.exists(fresh)
    assert storage.list(storage.join(root, "fail", f"fresh-{size}")) == []
    assert storage.read_bytes(kept) == b"previous version"


def test_local_paths_and_file_uris(tmp_path, big_file):
    for root in (str(tmp_path / "plain"), "file://" + str(tmp_path / "uri")):
        _roundtrip_big(root, big_file, tmp_path)
        _listing(root)
        _failed_upload_is_invisible(root, 3 * MB)
    leftovers = [p for p in tmp_path.rglob("*.tmp")]
    assert leftovers == []


def test_s3_roundtrip_50mb(s3, big_file, tmp_path):
    _roundtrip_big(s3, big_file, tmp_path)


def test_s3_list_read_exists(s3):
    _listing(s3)


@pytest.mark.parametrize("size", [3 * MB, 40 * MB])  # single PUT, then multipart (parts of 16 MB)
def test_s3_failed_upload_leaves_nothing_and_keeps_old_object(s3, size):
    _failed_upload_is_invisible(s3, size)


def test_s3_rejects_bad_credentials_without_retrying_forever(s3, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    from minio.error import S3Error

    with pytest.raises(S3Error) as err:
        storage.read_bytes(storage.join(s3, "ls", "a/1.txt"))
    assert err.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")


def test_s3_missing_bucket_is_named(s3):
    with pytest.raises(storage.StorageError, match="no-such-bucket"):
        storage.read_bytes("s3://no-such-bucket/x")


def test_gcs_roundtrip_50mb(gcs, big_file, tmp_path):
    _roundtrip_big(gcs, big_file, tmp_path)


def test_gcs_list_read_exists(gcs):
    _listing(gcs)


@pytest.mark.parametrize("size", [3 * MB, 40 * MB])  # multipart request, then resumable chunks of 16 MB
def test_gcs_failed_upload_leaves_nothing_and_keeps_old_object(gcs, size):
    _failed_upload_is_invisible(gcs, size)


@pytest.mark.parametrize("backend", ["s3", "gcs", "local"])
def test_stage_directory_roundtrip(backend, request, tmp_path):
    root = str(tmp_path / "remote") if backend == "local" else request.getfixturevalue(backend)
    src = tmp_path / "stage"
    (src / "nested").mkdir(parents=True)
    (src / "table.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 10)
    (src / "nested" / "x.npy").write_bytes(b"\x93NUMPY")
    seal(src, "ingest", {"rows": 3})
    uris = storage.upload_dir(src, storage.join(root, "runs", "r1", "ingest"))
    assert uris[-1].endswith("/manifest.json")  # last: its presence means the directory is complete
    got = storage.download_dir(storage.join(root, "runs", "r1", "ingest"), tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix() for p in got) == [
        "manifest.json",
        "nested/x.npy",
        "table.parquet",
    ]
    for rel in ("manifest.json", "table.parquet", "nested/x.npy"):
        assert (tmp_path / "copy" / rel).read_bytes() == (src / rel).read_bytes()


class FlakyProxy(LoopbackServer):
    """TCP proxy that resets the first `drops` connections, then forwards: a real network hiccup."""

    def __init__(self, target: tuple[str, int], drops: int):
        self.target, self.drops = target, drops
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        if self.accepted <= self.drops:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # RST: connection reset by peer
            return
        up = socket.create_connection(self.target)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def test_s3_survives_reset_connections(s3, seaweed, monkeypatch):
    storage.write_bytes(storage.join(s3, "flaky", "obj"), b"payload")
    host, port = seaweed[7:].split(":")
    proxy = FlakyProxy((host, int(port)), drops=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    assert storage.read_bytes(storage.join(s3, "flaky", "obj")) == b"payload"
    assert proxy.accepted >= 3  # two resets, then a connection that got through
    proxy.close()


def test_split_and_errors():
    assert storage.split("s3://b/k/x.parquet") == ("s3", "b", "k/x.parquet")
    assert storage.split("gs://b/") == ("gs", "b", "")
    assert storage.split("file:///tmp/a") == ("file", "", "/tmp/a")
    assert storage.split("rel/dir") == ("file", "", "rel/dir")
    with pytest.raises(storage.StorageError, match="unsupported URI scheme 'http'"):
        storage.split("http://example.com/x")
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.split("s3:///key")


def test_tls_switch_is_explicit(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "minio.example:9000")
    monkeypatch.setenv("S3_USE_TLS", "false")
    assert storage.s3_settings()[:2] == ("minio.example:9000", False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.example")
    monkeypatch.delenv("S3_USE_TLS")
    assert storage.s3_settings()[:2] == ("minio.example", True)
    monkeypatch.setenv("S3_USE_TLS", "perhaps")
    with pytest.raises(storage.StorageError, match="S3_USE_TLS"):
        storage.s3_settings()


@pytest.fixture
def silent(monkeypatch):
    server = SilentServer()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any-key")  # never checked: the server never answers
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield server
    server.close()
    storage.configure(StorageConfig())


def test_a_silent_endpoint_fails_within_the_deadline_naming_it(silent):
    """Each attempt waits read_timeout, then backs off; the deadline (not minio's 5 min x 5) ends it."""
    storage.configure(StorageConfig(connect_timeout=1, read_timeout=0.2, deadline=1.5, attempts=50))
    with pytest.raises(storage.StorageError) as err:
        storage.read_bytes("s3://kabuflow/raw/manifest.json")
    msg = str(err.value)
    assert f"endpoint 127.0.0.1:{silent.port}" in msg and "storage.deadline=1.5s" in msg and "\n" not in msg
    attempts = int(re.search(r"failed (\d+) attempt", msg).group(1))
    assert attempts == silent.accepted  # one connection per attempt: no hidden client-side retries
    assert 1 <= attempts < 50  # the deadline stopped it, not the attempt budget
    assert "ReadTimeoutError" in msg


def test_no_server_at_all_gives_up_after_the_attempts(monkeypatch):
    port = free_port()  # nothing listens here: connection refused
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    storage.configure(StorageConfig(attempts=3, deadline=60))
    try:
        with pytest.raises(storage.StorageError, match=rf"endpoint 127.0.0.1:{port} failed 3 attempt\(s\)"):
            storage.exists("s3://kabuflow/x")
    finally:
        storage.configure(StorageConfig())


def test_a_stage_checks_it_can_write_before_it_computes(silent, tmp_path):
    """`kabuflow ingest --out s3://...` against a silent endpoint: one line naming it, exit 1, and the
    source never ran (the probe write comes first)."""
    cmd = [sys.executable, "-m", "kabuflow.cli", *"ingest --source synthetic --out s3://kabuflow/raw".split()]
    cmd += ["--set", "storage.read_timeout=0.2", "--set", "storage.deadline=1", "--set", "storage.attempts=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kabuflow ingest: StorageError: write s3://kabuflow/raw/.kabuflow-write-probe-")
    assert f"endpoint 127.0.0.1:{silent.port}" in last and "storage.deadline=1s" in last
    assert "synthetic" not in proc.stdout and "rows" not in proc.stdout  # nothing was computed


@pytest.mark.parametrize("backend", ["s3", "gcs", "local"])
def test_republishing_a_prefix_removes_stale_objects_and_downloads_verify(backend, request, tmp_path):
    root = str(tmp_path / "remote") if backend == "local" else request.getfixturevalue(backend)
    uri = storage.join(root, "runs", "republish", "raw")
    first, second = tmp_path / "first", tmp_path / "second"
    for d, names in ((first, ["a.parquet", "topix.parquet"]), (second, ["a.parquet", "b.parquet"])):
        d.mkdir()
        for n in names:
            (d / n).write_bytes(f"{d.name}:{n}".encode())
        seal(d, "ingest")
    storage.upload_dir(first, uri)
    storage.upload_dir(second, uri)
    names = [u.rsplit("/", 1)[1] for u in storage.list(storage.join(uri, ""))]
    assert names == ["a.parquet", "b.parquet", "manifest.json"]  # topix.parquet of the first run is gone
    got = storage.download_dir(uri, tmp_path / "copy")
    assert (tmp_path / "copy" / "a.parquet").read_bytes() == b"second:a.parquet"
    assert sorted(p.name for p in got) == names
    storage.write_bytes(storage.join(uri, "b.parquet"), b"second:b.parqueX")  # replaced behind its back
    with pytest.raises(ArtifactError, match=r"republish/raw: b.parquet does not match manifest.json"):
        storage.download_dir(uri, tmp_path / "again")
