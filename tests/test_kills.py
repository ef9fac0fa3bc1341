"""Real SIGKILLs of `kabuflow ingest`, `features` and an S3 upload at several points: the next stage reads
the complete old output, the complete new one, or refuses in one line naming what is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from servers import LoopbackServer, pipe

from kabuflow import storage
from kabuflow.manifest import open_dir, partial_dir

TINY = ["synthetic.n_stocks=30", "synthetic.start=2021-01-04", "synthetic.end=2021-12-30"]


def _cli(command: str, *args: str, seed: int = 11) -> list[str]:
    sets = [a for s in [*TINY, f"synthetic.seed={seed}"] for a in ("--set", s)]
    return [sys.executable, "-m", "kabuflow.cli", command, *args, *sets]


def _run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _kill_when(cmd: list[str], ready: Callable[[], bool], env: dict | None = None) -> bool:
    """Start `cmd` and SIGKILL it the moment `ready()` holds; True when the kill hit a running process
    (False: it had finished first, and its output is simply the new one)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while proc.poll() is None and not ready():
        pass  # busy-wait: the windows between two files are milliseconds wide
    landed = proc.poll() is None
    if landed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return landed


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _input_sha(stage_out: Path) -> str:
    return next(iter(json.loads((stage_out / "manifest.json").read_text())["inputs"].values()))["sha256"]


def _assert_whole(out: Path, allowed: dict[str, str]) -> str:
    """`out` is one complete output (every listed file hashed) and one of `allowed` (name -> manifest
    sha256), with nothing half-written inside it; returns which."""
    art = open_dir(out, "hash")
    assert art.extra == () and not list(out.rglob("*.tmp"))
    names = [name for name, sha in allowed.items() if sha == art.sha256]
    assert names, f"{out} holds an output that is neither of {sorted(allowed)}"
    return names[0]


def test_sigkilled_ingest_and_features_leave_the_old_output_or_the_new(tmp_path):
    raw, feats = tmp_path / "raw", tmp_path / "features"
    assert _run(_cli("ingest", "--source", "synthetic", "--out", str(raw))).returncode == 0
    old = _sha(raw / "manifest.json")
    part = partial_dir(raw)
    points = [
        part.is_dir,  # the stage has started: its partial directory exists, no table yet
        lambda: len(list(part.glob("*.parquet"))) >= 3,  # some tables of seed 5 written, others not
        lambda: (part / "manifest.json").exists(),  # complete, manifest written, not yet published
    ]
    landed = []
    for ready in points:
        landed.append(_kill_when(_cli("ingest", "--source", "synthetic", "--out", str(raw), seed=5), ready))
        state = _assert_whole(raw, {"old": old, "new": _sha(raw / "manifest.json")})
        assert state == "old" or not landed[-1] or ready is points[-1]
    assert landed[0], "the first kill point (before any table) must hit a running ingest"
    # The next stage reads exactly the output that is there, and what it read is in its manifest.
    proc = _run(_cli("features", "--raw", str(raw), "--out", str(feats)))
    assert proc.returncode == 0, proc.stderr
    assert _input_sha(feats) == _sha(raw / "manifest.json")
    old_features = _sha(feats / "manifest.json")
    fpart = partial_dir(feats)
    # features.parquet replaced but manifest not yet (the 696,648-vs-694,164 rows case), then
    # manifest written but not yet published. `--set features.horizons` makes the new output differ.
    fpoints = [lambda: (fpart / "features.parquet").exists(), lambda: (fpart / "manifest.json").exists()]
    for ready in fpoints:
        cmd = _cli("features", "--raw", str(raw), "--out", str(feats), "--set", "features.horizons=[1,5,10]")
        hit = _kill_when(cmd, ready)
        state = _assert_whole(feats, {"old": old_features, "new": _sha(feats / "manifest.json")})
        assert state == "old" or not hit or ready is fpoints[-1]
    norm = _cli("normalize", "--features", str(feats), "--out", str(tmp_path / "panel"))
    proc = _run([*norm, "--set", "features.horizons=[1,5,10]"])  # reads either features output
    assert proc.returncode == 0, proc.stderr
    assert _input_sha(tmp_path / "panel") == _sha(feats / "manifest.json")
    # A clean run afterwards publishes and sweeps what the kills left beside the outputs.
    assert _run(_cli("ingest", "--source", "synthetic", "--out", str(raw), seed=5)).returncode == 0
    assert json.loads((raw / "manifest.json").read_text())["config"]["synthetic"]["seed"] == 5
    assert not part.exists() and not list(tmp_path.rglob("*.tmp"))


def test_a_directory_without_manifest_is_refused_in_one_line(tmp_path):
    raw = tmp_path / "raw"
    assert _run(_cli("ingest", "--source", "synthetic", "--out", str(raw))).returncode == 0
    (raw / "manifest.json").unlink()  # what a failed ingest of the old code left
    proc = _run(_cli("features", "--raw", str(raw), "--out", str(tmp_path / "f")))
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert f"{raw}: no manifest.json" in proc.stderr
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())


class MutationGate(LoopbackServer):
    """A TCP proxy in front of the S3 server that counts mutating requests (PUT, POST, DELETE) and stops
    forwarding at the `hold`-th one: the client hangs right before that request reaches the server."""

    REQUEST = re.compile(rb"(PUT|POST|DELETE) /\S* HTTP/1\.1\r\n")

    def __init__(self, target: tuple[str, int], hold: int):
        self.target, self.hold, self.count = target, hold, 0
        self.held, self.lock = threading.Event(), threading.Lock()
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        up = socket.create_connection(self.target)
        self.conns.append(up)
        threading.Thread(target=self._up, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()

    def _up(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while (data := a.recv(65536)) and not self.held.is_set():
                for m in self.REQUEST.finditer(data):
                    with self.lock:
                        self.count += 1
                        stop = self.count >= self.hold
                    if stop:  # forward what came before the request line, then hold the connection
                        b.sendall(data[: m.start()])
                        self.held.set()
                        return
                b.sendall(data)
        except OSError:
            pass


def test_sigkilled_upload_to_s3_is_never_read_as_a_mix(s3, seaweed, tmp_path):
    """Synthetic ingest at a prefix, then `--source files` into the same prefix (the issue's case),
    killed at mutation k of its upload: probe PUT (1), probe DELETE (2), old manifest DELETE (3), three
    tables (4-6), new manifest (7), stale objects of the synthetic run (8-12)."""
    from raw_files import make_dir

    uri = f"{s3}/kill/raw"
    old_local = tmp_path / "old"
    assert _run(_cli("ingest", "--source", "synthetic", "--out", str(old_local))).returncode == 0
    old_listing = {storage.join(uri, p.name) for p in old_local.iterdir()}
    files_dir = make_dir(tmp_path / "files")
    new = _cli("ingest", "--source", "files", "--path", str(files_dir), "--out", uri)
    host, port = seaweed[7:].split(":")
    outcomes = {}
    for hold in (3, 5, 7, 9):
        storage.upload_dir(old_local, uri)  # start from the complete synthetic output each time
        gate = MutationGate((host, int(port)), hold)
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{gate.port}"}
        assert _kill_when(new, gate.held.is_set, env), f"mutation {hold} was never reached"
        gate.close()
        proc = _run(_cli("features", "--raw", uri, "--out", str(tmp_path / f"f{hold}")))
        if proc.returncode == 0:
            got = json.loads((tmp_path / f"f{hold}" / "manifest.json").read_text())
            source = "files" if got["families_absent"] else "synthetic"
            assert (
                _input_sha(tmp_path / f"f{hold}")
                == hashlib.sha256(storage.read_bytes(storage.join(uri, "manifest.json"))).hexdigest()
            )
            outcomes[hold] = source
        else:
            assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
            assert f"{uri}: no manifest.json" in proc.stderr
            outcomes[hold] = "refused"
    # Before the old manifest goes, the old output is whole; between its deletion and the new manifest,
    # readers refuse; once the new manifest is in, they read the new tables and never a stale one.
    assert outcomes == {3: "synthetic", 5: "refused", 7: "refused", 9: "files"}
    assert _run(new).returncode == 0
    left = set(storage.list(storage.join(uri, "")))
    assert left == {storage.join(uri, n) for n in ("equities_bars_daily.parquet", "equities_master.parquet",
                                                    "indices_bars_daily_topix.parquet", "manifest.json")}  # fmt: skip
    assert old_listing - left  # the synthetic run's extra tables are gone
    proc = _run(_cli("features", "--raw", uri, "--out", str(tmp_path / "f")))
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert {a["family"] for a in got["families_absent"]} == {"stmt", "flow", "margin"}
