"""Bytes, files and stage directories by URI: local paths, file://, s3:// (minio client) and gs://."""

from __future__ import annotations

import functools
import io
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from kabuflow.artifacts import atomic_write

log = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 5  # per operation, on transient network errors (the clients also retry inside)
BACKOFF_SECONDS = 0.5
PART_SIZE = 16 * 1024 * 1024  # S3 multipart part / GCS resumable chunk (a multiple of 256 KiB)
_TMP = re.compile(r"^\..+\.tmp$")  # artifacts.atomic_write's temporaries: never listed


class StorageError(RuntimeError):
    """A storage operation that cannot succeed as configured; the message names URI, bucket or variable."""


def split(uri: str | Path) -> tuple[str, str, str]:
    """(scheme, bucket, key) of a URI; local paths and file:// give ("file", "", path)."""
    text = str(uri)
    parts = urlsplit(text)
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc:
            raise StorageError(f"{text}: no bucket in URI (expected {parts.scheme}://BUCKET/KEY)")
        return parts.scheme, parts.netloc, parts.path.lstrip("/")
    if parts.scheme == "file":
        return "file", "", parts.path
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise StorageError(
            f"{text}: unsupported URI scheme {parts.scheme!r} (use a path, file://, s3://, gs://)"
        )
    return "file", "", text


def is_remote(uri: str | Path) -> bool:
    """True for s3:// and gs:// URIs: the callers that must stage data through a local directory."""
    return split(uri)[0] != "file"


def join(uri: str | Path, *parts: str) -> str:
    """Append path parts with '/' (keys and paths alike)."""
    out = str(uri).rstrip("/")
    for p in parts:
        out += "/" + str(p).strip("/")
    return out


def _env_flag(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    flags = {"": None, "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if raw not in flags:
        raise StorageError(f"environment variable {name}={raw!r} is not a boolean (true/false)")
    return flags[raw]


def _s3_settings() -> tuple[str, bool, str | None, str | None, str | None, str | None]:
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
def _s3_client(settings: tuple[str, bool, str | None, str | None, str | None, str | None]) -> Any:
    from minio import Minio

    endpoint, tls, key, secret, token, region = settings
    return Minio(endpoint, access_key=key, secret_key=secret, session_token=token, secure=tls, region=region)


@functools.lru_cache(maxsize=4)
def _gcs_client(emulator: str, project: str) -> Any:
    from google.cloud import storage as gcs

    if emulator:  # the emulator takes no credentials; the client reads STORAGE_EMULATOR_HOST itself
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project=project or "test", credentials=AnonymousCredentials())
    return gcs.Client(project=project or None)


def _transient(err: BaseException) -> bool:
    """Network hiccups and server-side overload: worth another try. Anything else is final."""
    import requests
    import urllib3
    from google.api_core import exceptions as gexc
    from minio.error import S3Error, ServerError

    if isinstance(err, S3Error):
        return err.code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
    net = (
        ConnectionError,
        TimeoutError,
        urllib3.exceptions.HTTPError,
        requests.ConnectionError,
        requests.Timeout,
    )
    busy = (ServerError, gexc.TooManyRequests, gexc.ServerError)  # gexc.ServerError: any HTTP 5xx
    return isinstance(err, (*net, *busy, requests.exceptions.ChunkedEncodingError))


def _missing(uri: str, err: BaseException) -> BaseException:
    """Map 'no such object' to FileNotFoundError naming the URI; other errors pass through."""
    from google.api_core.exceptions import NotFound
    from minio.error import S3Error

    if isinstance(err, S3Error) and err.code == "NoSuchBucket":
        return StorageError(f"{uri}: bucket {err.bucket_name!r} does not exist")
    if isinstance(err, S3Error) and err.code in ("NoSuchKey", "NoSuchObject"):
        return FileNotFoundError(f"no object at {uri}")
    return FileNotFoundError(f"no object at {uri} ({err.message})") if isinstance(err, NotFound) else err


def _call(uri: str, what: str, fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run `fn`, retrying transient failures with exponential backoff and jitter; name the URI on failure."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:
            if attempt == attempts - 1 or not _transient(err):
                mapped = _missing(uri, err)
                if mapped is err:
                    raise
                raise mapped from None
            delay = BACKOFF_SECONDS * 2**attempt * (0.5 + random.random())
            name, n = type(err).__name__, attempt + 1
            log.warning("%s %s: %s; retry %d/%d in %.1fs", what, uri, name, n, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _copy(stream: BinaryIO, path: Path) -> None:
    with path.open("wb") as f:
        shutil.copyfileobj(stream, f, 1024 * 1024)


class _Forward(io.RawIOBase):
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


class _Local:
    """Paths: atomic by temp file + rename in the target directory."""

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

    def names(self, prefix: str) -> list[str]:
        return [str(p) for p in _local_files(prefix)]


class _S3:
    """S3/MinIO: a single PUT, or a multipart upload that becomes visible only on completion."""

    def __init__(self, bucket: str):
        self.bucket, self.c = bucket, _s3_client(_s3_settings())

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

    def names(self, prefix: str) -> list[str]:
        return [o.object_name for o in self.c.list_objects(self.bucket, prefix, recursive=True)]


class _GCS:
    """GCS: one multipart request, or a resumable upload finalised only after its last chunk."""

    def __init__(self, bucket: str):
        env = os.environ.get
        self.c = _gcs_client(env("STORAGE_EMULATOR_HOST", ""), env("GOOGLE_CLOUD_PROJECT", ""))
        self.bucket = self.c.bucket(bucket)

    def _blob(self, key: str) -> Any:
        return self.bucket.blob(key, chunk_size=PART_SIZE)

    def read(self, key: str) -> bytes:
        return self._blob(key).download_as_bytes()

    def write(self, key: str, stream: BinaryIO, size: int) -> None:
        self._blob(key).upload_from_file(
            _Forward(stream) if size < 0 else stream, size=None if size < 0 else size
        )

    def upload(self, local: Path, key: str) -> None:
        self._blob(key).upload_from_filename(str(local))

    def download(self, key: str, path: Path) -> None:
        self._blob(key).download_to_filename(str(path))

    def exists(self, key: str) -> bool:
        return self._blob(key).exists()

    def names(self, prefix: str) -> list[str]:
        return [b.name for b in self.c.list_blobs(self.bucket, prefix=prefix)]


def _open(uri: str | Path) -> tuple[str, Any, str]:
    """(uri as text, backend, key) for a URI."""
    scheme, bucket, key = split(uri)
    backend = _Local() if scheme == "file" else _S3(bucket) if scheme == "s3" else _GCS(bucket)
    return str(uri), backend, key


def write_stream(uri: str | Path, stream: BinaryIO) -> str:
    """Write everything `stream` yields to `uri`; all or nothing: a failure leaves any old object as it was.

    Local: temp file + rename. S3: one PUT, or a multipart upload that only appears on completion
    (and is aborted on error). GCS: a resumable upload that only finalises after the last chunk.
    Not retried (a stream cannot be rewound): use write_bytes or put_file for retries.
    """
    text, b, key = _open(uri)
    _call(text, "write", lambda: b.write(key, stream, -1), attempts=1)
    return text


def write_bytes(uri: str | Path, data: bytes) -> str:
    """Atomically write `data` to `uri` (see write_stream), retrying transient network errors."""
    text, b, key = _open(uri)
    _call(text, "write", lambda: b.write(key, io.BytesIO(data), len(data)))
    return text


def read_bytes(uri: str | Path) -> bytes:
    """The whole object at `uri`; FileNotFoundError naming it when absent."""
    text, b, key = _open(uri)
    return _call(text, "read", lambda: b.read(key))


def put_file(local: str | Path, uri: str | Path) -> str:
    """Upload one local file to `uri` atomically (multipart/resumable for large files), with retries."""
    text, b, key = _open(uri)
    if not Path(local).is_file():
        raise FileNotFoundError(f"no local file {local} to upload to {text}")
    _call(text, "upload", lambda: b.upload(Path(local), key))
    return text


def get_file(uri: str | Path, local: str | Path) -> Path:
    """Download `uri` to `local`; the local file appears whole or not at all."""
    text, b, key = _open(uri)
    return _call(text, "download", lambda: atomic_write(local, lambda p: b.download(key, p)))


def exists(uri: str | Path) -> bool:
    """True when an object (or local file) exists at `uri`."""
    text, b, key = _open(uri)
    return _call(text, "stat", lambda: b.exists(key))


def _local_files(prefix: str) -> Iterator[Path]:
    """Files whose path starts with `prefix` (a string prefix, as object stores mean it)."""
    norm = str(Path(prefix)) + ("/" if prefix.endswith("/") else "")
    base = Path(norm) if norm.endswith("/") else Path(norm).parent
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        if path.is_file() and not _TMP.match(path.name) and str(path).startswith(norm):
            yield path


def list_uris(prefix_uri: str | Path) -> list[str]:
    """Every object whose URI starts with `prefix_uri` (recursively), sorted, as full URIs."""
    text, b, key = _open(prefix_uri)
    names = _call(text, "list", lambda: b.names(key))
    scheme, bucket, _ = split(text)
    if scheme == "file":
        return sorted("file://" + n if text.startswith("file://") else n for n in names)
    return sorted(f"{scheme}://{bucket}/{n}" for n in names)


list = list_uris  # noqa: A001 -- the name the stage contract uses: storage.list(prefix)


def ensure_bucket(uri: str | Path) -> None:
    """Create the bucket of an s3:// or gs:// URI when it does not exist (local: the directory)."""
    text, b, key = _open(uri)
    if isinstance(b, _Local):
        Path(key).mkdir(parents=True, exist_ok=True)
    elif isinstance(b, _S3):
        if not _call(text, "stat bucket", lambda: b.c.bucket_exists(b.bucket)):
            _call(text, "create bucket", lambda: b.c.make_bucket(b.bucket))
    elif b.c.lookup_bucket(b.bucket.name) is None:
        b.c.create_bucket(b.bucket.name)


def upload_dir(local_dir: str | Path, uri: str | Path) -> list[str]:
    """Upload a stage directory file by file; manifest.json goes last, so its presence means complete."""
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no local directory {root} to upload to {uri}")
    files = [p for p in root.rglob("*") if p.is_file() and not _TMP.match(p.name)]
    files.sort(key=lambda p: (p.relative_to(root).as_posix() == "manifest.json", p.as_posix()))
    return [put_file(p, join(uri, p.relative_to(root).as_posix())) for p in files]


def download_dir(uri: str | Path, local_dir: str | Path) -> list[Path]:
    """Download every object under `uri`/ into `local_dir`, keeping relative paths."""
    prefix = str(uri).rstrip("/") + "/"
    objects = list_uris(prefix)
    if not objects:
        raise FileNotFoundError(f"nothing stored under {prefix}")
    return [get_file(o, Path(local_dir) / o[len(prefix) :]) for o in objects]
