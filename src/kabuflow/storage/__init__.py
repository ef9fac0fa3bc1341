"""Bytes, files and stage directories by URI: local paths, file://, s3:// (minio client) and gs://.

Every operation has connect/read timeouts and retries transient errors with backoff under a total
deadline (`storage.*` settings, see retry.configure); failures are one line naming URI and endpoint.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from kabuflow.artifacts import atomic_write
from kabuflow.storage.backends import GCS, S3, Local, s3_settings
from kabuflow.storage.retry import StorageError, call, configure, settings

__all__ = ["StorageError", "configure", "settings", "s3_settings"]


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


def _open(uri: str | Path) -> tuple[str, Any, str]:
    """(uri as text, backend, key) for a URI."""
    scheme, bucket, key = split(uri)
    backend = Local() if scheme == "file" else S3(bucket) if scheme == "s3" else GCS(bucket)
    return str(uri), backend, key


def write_stream(uri: str | Path, stream: BinaryIO) -> str:
    """Write everything `stream` yields to `uri`; all or nothing: a failure leaves any old object as it was.

    Local: temp file + rename. S3: one PUT, or a multipart upload that only appears on completion
    (and is aborted on error). GCS: a resumable upload that only finalises after the last chunk.
    Not retried (a stream cannot be rewound): use write_bytes or put_file for retries.
    """
    text, b, key = _open(uri)
    call(text, "write", lambda: b.write(key, stream, -1), b.endpoint, attempts=1)
    return text


def write_bytes(uri: str | Path, data: bytes) -> str:
    """Atomically write `data` to `uri` (see write_stream), retrying transient network errors."""
    text, b, key = _open(uri)
    call(text, "write", lambda: b.write(key, io.BytesIO(data), len(data)), b.endpoint)
    return text


def read_bytes(uri: str | Path) -> bytes:
    """The whole object at `uri`; FileNotFoundError naming it when absent."""
    text, b, key = _open(uri)
    return call(text, "read", lambda: b.read(key), b.endpoint)


def put_file(local: str | Path, uri: str | Path) -> str:
    """Upload one local file to `uri` atomically (multipart/resumable for large files), with retries."""
    text, b, key = _open(uri)
    if not Path(local).is_file():
        raise FileNotFoundError(f"no local file {local} to upload to {text}")
    call(text, "upload", lambda: b.upload(Path(local), key), b.endpoint)
    return text


def get_file(uri: str | Path, local: str | Path) -> Path:
    """Download `uri` to `local`; the local file appears whole or not at all."""
    text, b, key = _open(uri)
    return call(text, "download", lambda: atomic_write(local, lambda p: b.download(key, p)), b.endpoint)


def exists(uri: str | Path) -> bool:
    """True when an object (or local file) exists at `uri`."""
    text, b, key = _open(uri)
    return call(text, "stat", lambda: b.exists(key), b.endpoint)


def delete(uri: str | Path) -> None:
    """Remove the object (or local file) at `uri`; absent is fine."""
    text, b, key = _open(uri)
    call(text, "delete", lambda: b.delete(key), b.endpoint)


def list_uris(prefix_uri: str | Path) -> list[str]:
    """Every object whose URI starts with `prefix_uri` (recursively), sorted, as full URIs."""
    text, b, key = _open(prefix_uri)
    names = call(text, "list", lambda: b.names(key), b.endpoint)
    scheme, bucket, _ = split(text)
    if scheme == "file":
        return sorted("file://" + n if text.startswith("file://") else n for n in names)
    return sorted(f"{scheme}://{bucket}/{n}" for n in names)


list = list_uris  # noqa: A001 -- the name the stage contract uses: storage.list(prefix)


def ensure_bucket(uri: str | Path) -> None:
    """Create the bucket of an s3:// or gs:// URI when it does not exist (local: the directory)."""
    text, b, key = _open(uri)
    if isinstance(b, Local):
        Path(key).mkdir(parents=True, exist_ok=True)
    elif isinstance(b, S3):
        if not call(text, "stat bucket", lambda: b.c.bucket_exists(b.bucket), b.endpoint):
            call(text, "create bucket", lambda: b.c.make_bucket(b.bucket), b.endpoint)
    elif call(text, "stat bucket", lambda: b.c.lookup_bucket(b.bucket.name, **b.kw), b.endpoint) is None:
        call(text, "create bucket", lambda: b.c.create_bucket(b.bucket.name, **b.kw), b.endpoint)


def check_writable(uri: str | Path) -> None:
    """Write and delete a probe object under `uri`, before a stage computes for minutes: a missing
    bucket, wrong credentials or a dead endpoint fail now, in one line, rather than at upload time."""
    probe = join(uri, f".kabuflow-write-probe-{uuid.uuid4().hex[:8]}")
    if not is_remote(uri):
        Path(split(uri)[2]).mkdir(parents=True, exist_ok=True)
    try:
        write_bytes(probe, b"probe")
        delete(probe)
    except PermissionError as err:
        raise StorageError(f"{uri}: not writable ({err})") from None


from kabuflow.storage.dirs import download_dir, upload_dir  # noqa: E402 -- dirs builds on the above

__all__ += ["download_dir", "upload_dir"]
