"""`make image-test`'s verdict on a container run: every task in a container of the image, as uid 1000,
and the same metrics as the same config through the subprocess runner. Exits non-zero naming what failed.

    python scripts/image_check.py --docker runs/image-test/docker --subprocess runs/image-test/subprocess
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import docker

IMAGE_UID = 1000


def _tasks(run: Path) -> list[Path]:
    """Every task the runner ran: each leaves an executor_output.json in its folder of the pipeline root."""
    return sorted(run.glob("kfp/*/**/executor_output.json"))


def container_starts(client: docker.DockerClient, label: str, since: float, until: float) -> list[str]:
    """The engine's own record: the image of each container labelled with this run that started.

    podman 4.3's Docker-compatible events endpoint answers a bounded query with nothing (and its CLI's
    --until drops past events), so on podman its CLI reads the log from `since` on, the label alone
    naming the run; on Docker the API does."""
    match = ["--filter", "event=start", "--filter", f"label=kabuflow.run={label}"]
    if shutil.which("podman"):
        cmd = [
            "podman",
            "events",
            "--stream=false",
            "--since",
            str(int(since)),
            *match,
            "--format",
            "{{.Image}}",
        ]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    filters = {"type": "container", "event": "start", "label": f"kabuflow.run={label}"}
    events = client.events(since=int(since), until=int(until) + 1, filters=filters, decode=True)
    return [e.get("from", "") for e in events]


def diff_metrics(a: dict, b: dict, path: str = "") -> list[str]:
    """Paths where two metrics.json trees differ (numbers beyond 1e-9 relative), '' paths excluded."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one run" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += diff_metrics(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, int | float) and isinstance(b, int | float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def check(docker_run: Path, subprocess_run: Path) -> list[str]:
    """Everything that is wrong with the container run (empty: it passed)."""
    record = json.loads((docker_run / "run.json").read_text())
    image, problems = record["image"], []
    client = docker.from_env()
    try:
        tasks = _tasks(docker_run)
        starts = container_starts(client, record["label"], record["started"], record["finished"])
        images = set(starts)
        print(f"image-check: {len(tasks)} tasks, {len(starts)} containers started, images {sorted(images)}")
        if len(starts) != len(tasks) or not tasks:
            problems.append(f"{len(tasks)} tasks ran but the engine started {len(starts)} containers")
        if images - {image, client.images.get(image).id}:
            problems.append(f"containers ran images {sorted(images)}, not only {image}")
        owners = {p.stat().st_uid for p in tasks}
        if owners != {IMAGE_UID}:
            problems.append(f"task outputs are owned by uids {sorted(owners)}, not {IMAGE_UID}")
        uid = client.containers.run(image, ["id", "-u"], remove=True).decode().strip()
        if uid != str(IMAGE_UID):
            problems.append(f"the image runs as uid {uid}, not {IMAGE_UID}")
        try:  # the system directories are root's: the image's user cannot change the installed code
            client.containers.run(image, ["touch", "/usr/probe"], remove=True)
            problems.append("the image's user can write /usr")
        except docker.errors.ContainerError:
            pass
        if not record.get("read_only"):
            problems.append("the tasks did not run with a read-only root filesystem")
    finally:
        client.close()
    ours = json.loads((docker_run / "metrics.json").read_text())
    theirs = json.loads((subprocess_run / "metrics.json").read_text())
    keys = ("models", "oracle")
    diffs = diff_metrics({k: ours.get(k) for k in keys}, {k: theirs.get(k) for k in keys})
    n = sum(len(h) for m in ours["models"].values() for h in m.values())
    print(
        f"image-check: metrics compared: {n} numbers over {len(ours['models'])} models; {len(diffs)} differ"
    )
    problems += [f"metrics differ at {d}" for d in diffs[:10]]
    return problems


def main() -> int:
    """Check, print each problem on stderr, exit 1 when there is any."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docker", type=Path, required=True)
    ap.add_argument("--subprocess", type=Path, required=True)
    args = ap.parse_args()
    problems = check(args.docker, args.subprocess)
    for p in problems:
        print(f"image-check: FAIL: {p}", file=sys.stderr)
    if not problems:
        print("image-check: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
