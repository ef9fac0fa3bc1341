"""Local stage directories published in one step (rename or atomic swap), and mended after a kill."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from pathlib import Path

MANIFEST = "manifest.json"


class ArtifactError(RuntimeError):
    """An artifact that cannot be trusted or an output location that cannot take one; the message names
    the directory, the file and what is wrong."""


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def siblings(final: Path) -> tuple[Path, Path]:
    """(partial, old): where `final` is written before publishing, and where it is moved aside."""
    return final.parent / f".{final.name}.partial", final.parent / f".{final.name}.old"


def partial_dir(out: str | Path) -> Path:
    """Where a stage writes `out` before publishing it (train-fold's checkpoints live there)."""
    return siblings(Path(out).absolute())[0]


def recover(final: Path) -> None:
    """Clean what a kill left beside `final`: a complete old output moved aside is put back, else removed."""
    _, old = siblings(final)
    if old.exists():
        if not final.exists() and (old / MANIFEST).is_file():
            os.rename(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)


def publish_dir(work: Path, final: Path) -> None:
    """Put the complete directory `work` at `final` in one step: readers see the old output or the new."""
    recover(final)
    if not final.exists():
        os.rename(work, final)
        return
    if _exchange(work, final):  # work now holds the old output
        shutil.rmtree(work, ignore_errors=True)
        return
    _, old = siblings(final)  # no atomic exchange here: two renames, and recover() mends a kill between
    os.rename(final, old)
    os.rename(work, final)
    shutil.rmtree(old, ignore_errors=True)


def check_target(final: Path) -> None:
    """Refuse to publish over a file, or over a directory with content that is not a stage output."""
    if final.exists() and not final.is_dir():
        raise ArtifactError(f"{final}: output exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not (final / MANIFEST).is_file():
        raise ArtifactError(
            f"{final}: output directory holds files but no {MANIFEST} (not a kabuflow stage output); "
            "use an empty or new directory"
        )


def clear(work: Path, keep: tuple[str, ...]) -> None:
    """Empty `work` but for top-level files matching a `keep` pattern (train-fold's checkpoints)."""
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
        return
    for path in work.iterdir() if work.is_dir() else ():
        if path.is_dir():
            shutil.rmtree(path)
        elif not any(path.match(k) for k in keep):
            path.unlink()
