"""pipelines/containers.py: finding a Docker-compatible engine, and directories the image's user can write.

The container run itself (a real podman, the built image, every task) is `make image-test`'s job."""

import os
import socket
import subprocess
import sys

import pytest

from kabuflow.config import ConfigError
from pipelines.containers import IMAGE_UID, candidate_sockets, find_engine, writable_by_image


def test_docker_host_wins_else_docker_then_podman_then_the_rootless_sockets():
    assert candidate_sockets({"DOCKER_HOST": "tcp://10.0.0.5:2375"}) == ["tcp://10.0.0.5:2375"]
    assert candidate_sockets({"XDG_RUNTIME_DIR": "/run/user/1000"}) == [
        "unix:///var/run/docker.sock",
        "unix:///run/podman/podman.sock",
        "unix:///run/user/1000/podman/podman.sock",
        "unix:///run/user/1000/docker.sock",
    ]


def test_no_engine_names_every_socket_tried_and_what_to_start(tmp_path):
    dead = tmp_path / "dead.sock"  # a socket file nobody listens on any more
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    with pytest.raises(ConfigError) as err:
        find_engine({"DOCKER_HOST": f"unix://{dead}"}, timeout=2)
    msg = str(err.value)
    assert msg.startswith("no Docker-compatible engine answers: tried unix://")
    assert str(dead) in msg and "scripts/podman-setup.sh" in msg and "DOCKER_HOST" in msg
    with pytest.raises(ConfigError, match=r"unix://\S+missing\.sock \(no such socket\)"):
        find_engine({"DOCKER_HOST": f"unix://{tmp_path / 'missing.sock'}"})


def test_the_cli_says_what_is_missing_in_one_line(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"}
    cmd = [sys.executable, "-m", "kabuflow.cli", "run", "--runner", "docker", "--image", "x:1"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("kabuflow run: ConfigError: no Docker-compatible engine answers")


def test_the_run_directories_become_the_task_users(tmp_path):
    root, champion = tmp_path / "kfp", tmp_path / "models" / "champion"
    (root / "old").mkdir(parents=True)
    (root / "old" / "f.txt").write_text("x")
    user = writable_by_image([root, champion])
    assert champion.is_dir()
    if os.getuid() != 0:  # tasks run as the caller (not root), whose directories these already are
        assert user == {"user": f"{os.getuid()}:{os.getgid()}"}
        return
    assert user == {}  # as root: the image's own user, and the directories are handed to it
    for p in (root, root / "old", root / "old" / "f.txt", champion):
        assert p.stat().st_uid == IMAGE_UID and p.stat().st_gid == IMAGE_UID, p
