"""The code version every artifact carries: the git commit of the working tree or the image."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def code_version() -> str:
    """Git SHA of the working tree when available (suffix -dirty), else the package version.

    Images have no .git: they carry the commit in KABUFLOW_GIT_SHA (docker/Dockerfile's GIT_SHA).
    """
    if os.environ.get("KABUFLOW_GIT_SHA", "unknown") != "unknown":
        return os.environ["KABUFLOW_GIT_SHA"]
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "kabuflow-" + version("kabuflow")
        except PackageNotFoundError:
            return "unknown"
