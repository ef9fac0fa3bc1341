"""Atomic local writes and the provenance stamp (resolved config + code version) every artifact carries."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kabuflow import redact
from kabuflow.config import Config
from kabuflow.version import code_version

TMP_NAME = re.compile(r"^\..+\.tmp$")  # atomic_write's temporaries: never listed, never published


def stamp(cfg: Config, **extra: Any) -> dict[str, Any]:
    """Provenance for an artifact: the resolved config (credentials masked, cluster section left out),
    the code version, and stage-specific extras."""
    return {"code_version": code_version(), "config": redact.tree(cfg.stamped()), **extra}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are read by other users (pods, CI)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write pretty, deterministic JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    """Read a JSON artifact, naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing artifact file {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def write_parquet(path: str | Path, df: Any) -> Path:
    """Atomically write a polars DataFrame as zstd parquet (statistics on, for predicate pushdown)."""
    return atomic_write(path, lambda p: df.write_parquet(p, compression="zstd", statistics=True))
