"""The three backends behind kabuflow.storage: local paths, S3/MinIO (minio client), GCS."""

from __future__ import annotations

import functools
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from kabuflow.artifacts import TMP_NAME, atomic_write
from kabuflow.storage.retry import StorageError, settings

PART_SIZE = 16 * 1024 * 1024  # S3 multipart part / GCS resumable chunk (a multiple of 256 KiB)


def _env_flag(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    flags = {"": None, "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if raw not in flags:
        raise StorageError(f"environment variable {name}={raw!r} is not a boolean (true/false)")
    return flags[raw]


def s3_settings() -> tuple[str, bool, str | None, str | None, str | None, str | None]:
    """(endpoint, tls, key, secret, token, region) from the standard environment variables."""
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT", "MINIO_ENDPOINT")
    raw = next((os.environ[v] for v in names if os.environ.get(v)), "https://s3.amazonaws.com")
    parts = urlsplit(raw if "://" in raw else "//" + raw)
    tls = _env_flag("S3_USE_TLS")  # explicit switch first, else the endpoint's scheme, else TLS
    env = os.environ.get
    keys = env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN")
    tls = parts.scheme != "http" if tls is None else tls
    return parts.netloc, tls, *keys, env("AWS_REGION") or env("AWS_DEFAULT_REGION")


@functools.lru_cache(maxsize=4)
def _s3_client(
    s3: tuple[str, bool, str | None, str | None, str | None, str | None], timeouts: tuple[float, float]
) -> Any:
    import certifi
    import urllib3
    from minio import Minio

    endpoint, tls, key, secret, token, region = s3
    # minio's own pool waits 5 minutes per read and retries 5 times inside: one silent endpoint would
    # hang a stage for half an hour. Our pool fails fast; retry.call retries under storage.deadline.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeouts[0], read=timeouts[1]),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=False,
    )
    return Minio(
        endpoint,
        access_key=key,
        secret_key=secret,
        session_token=token,
        secure=tls,
        region=region,
        http_client=http,
    )


@functools.lru_cache(maxsize=4)
def _gcs_client(emulator: str, project: str) -> Any:
    from google.cloud import storage as gcs

    if emulator:  # the emulator takes no credentials; the client reads STORAGE_EMULATOR_HOST itself
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project=project or "test", credentials=AnonymousCredentials())
    return gcs.Client(project=project or None)


def _copy(stream: BinaryIO, path: Path) -> None:
    with path.open("wb") as f:
        shutil.copyfileobj(stream, f, 1024 * 1024)


class Forward(io.RawIOBase):
    """A read-only view of any stream that can tell() its position, which resumable uploads ask for."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.pos = stream, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if (whence, pos) not in ((0, self.pos), (1, 0)):
            raise io.UnsupportedOperation("a forward-only upload stream cannot rewind")
        return self.pos


def local_files(prefix: str) -> Iterator[Path]:
    """Files whose path starts with `prefix` (a string prefix, as object stores mean it)."""
    norm = str(Path(prefix)) + ("/" if prefix.endswith("/") else "")
    base = Path(norm) if norm.endswith("/") else Path(norm).parent
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        if path.is_file() and not TMP_NAME.match(path.name) and str(path).startswith(norm):
            yield path


class Local:
    """Paths: atomic by temp file + rename in the target directory."""

    endpoint = "local filesystem"

    def read(self, key: str) -> bytes:
        try:
            return Path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no file at {key}") from None

    def write(self, key: str, stream: BinaryIO, size: int) -> None:
        atomic_write(key, lambda p: _copy(stream, p))

    def upload(self, local: Path, key: str) -> None:
        atomic_write(key, lambda p: shutil.copyfile(local, p))

    def download(self, key: str, path: Path) -> None:
        if not Path(key).is_file():
            raise FileNotFoundError(f"no file at {key}")
        shutil.copyfile(key, path)

    def exists(self, key: str) -> bool:
        return Path(key).is_file()

    def delete(self, key: str) -> None:
        Path(key).unlink(missing_ok=True)

    def names(self, prefix: str) -> list[str]:
        return [str(p) for p in local_files(prefix)]


class S3:
    """S3/MinIO: a single PUT, or a multipart upload that becomes visible only on completion."""

    def __init__(self, bucket: str):
        s = settings()
        conf = s3_settings()
        self.bucket, self.endpoint = bucket, conf[0]
        self.c = _s3_client(conf, (s.connect_timeout, s.read_timeout))

    def read(self, key: str) -> bytes:
        buf = io.BytesIO()
        self._pipe(key, buf)
        return buf.getvalue()

    def write(self, key: str, stream: BinaryIO, size: int) -> None:
        self.c.put_object(self.bucket, key, stream, size, part_size=PART_SIZE)  # aborted on error

    def upload(self, local: Path, key: str) -> None:
        self.c.fput_object(self.bucket, key, str(local), part_size=PART_SIZE)

    def download(self, key: str, path: Path) -> None:
        with path.open("wb") as f:
            self._pipe(key, f)

    def _pipe(self, key: str, out: BinaryIO) -> None:
        resp = self.c.get_object(self.bucket, key)
        try:
            for chunk in resp.stream(1024 * 1024):
                out.write(chunk)
        finally:
            resp.close()
            resp.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.c.stat_object(self.bucket, key)
            return True
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.c.remove_object(self.bucket, key)  # S3 answers 204 for an absent key too

    def names(self, prefix: str) -> list[str]:
        return [o.object_name for o in self.c.list_objects(self.bucket, prefix, recursive=True)]


class GCS:
    """GCS: one multipart request, or a resumable upload finalised only after its last chunk.

    Every request carries (connect, read) timeouts and retry=None: retry.call retries under the deadline.
    """

    def __init__(self, bucket: str):
        env = os.environ.get
        emulator = env("STORAGE_EMULATOR_HOST", "")
        self.c = _gcs_client(emulator, env("GOOGLE_CLOUD_PROJECT", ""))
        self.bucket, self.endpoint = self.c.bucket(bucket), emulator or "storage.googleapis.com"
        s = settings()
        self.kw = {"timeout": (s.connect_timeout, s.read_timeout), "retry": None}

    def _blob(self, key: str) -> Any:
        return self.bucket.blob(key, chunk_size=PART_SIZE)

    def read(self, key: str) -> bytes:
        return self._blob(key).download_as_bytes(**self.kw)

    def write(self, key: str, stream: BinaryIO, size: int) -> None:
        self._blob(key).upload_from_file(
            Forward(stream) if size < 0 else stream, size=None if size < 0 else size, **self.kw
        )

    def upload(self, local: Path, key: str) -> None:
        self._blob(key).upload_from_filename(str(local), **self.kw)

    def download(self, key: str, path: Path) -> None:
        self._blob(key).download_to_filename(str(path), **self.kw)

    def exists(self, key: str) -> bool:
        return self._blob(key).exists(**self.kw)

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._blob(key).delete(**self.kw)
        except NotFound:
            pass

    def names(self, prefix: str) -> list[str]:
        return [b.name for b in self.c.list_blobs(self.bucket, prefix=prefix, **self.kw)]
