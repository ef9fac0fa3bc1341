"""A stage output as a unit: files first, manifest.json (table of contents) last, published atomically.

manifest.json lists every file with its size and sha256 (`files`), the inputs it was made from by the
sha256 of their manifests (`inputs`), and `lineage`: stage -> manifest sha256 for every upstream output.
Readers take it as the table of contents: they read only the files listed, check sizes always and
hashes by `storage.verify`, and refuse a directory whose manifest is missing, incomplete or wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kabuflow.artifacts import TMP_NAME, sha256_file, stamp, write_json
from kabuflow.config import Config
from kabuflow.publish import (
    MANIFEST,
    ArtifactError,
    check_target,
    clear,
    partial_dir,
    publish_dir,
    recover,
    siblings,
)

__all__ = ["ArtifactError", "Artifact", "Output", "open_dir", "output", "seal", "partial_dir", "publish_dir"]
__all__ += ["recover", "merge_lineage", "toc"]

log = logging.getLogger(__name__)

DAG = ("ingest", "features", "normalize", "graph", "folds", "train-fold", "evaluate")  # upstream first
AUTO_HASH_BYTES = 256 * 2**20  # verify=auto hashes files up to this size; larger ones by size only


def toc(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `root` but the manifest and temporaries."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST and not TMP_NAME.match(path.name):
            out[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return out


@dataclass(frozen=True)
class Artifact:
    """A verified stage output: its directory, manifest, identity (sha256 of manifest.json) and lineage."""

    path: Path
    manifest: dict[str, Any]
    sha256: str
    extra: tuple[str, ...] = ()

    @property
    def stage(self) -> str:
        return str(self.manifest.get("stage", "?"))

    @property
    def upstream(self) -> dict[str, str]:
        """Every upstream stage's manifest hash (what this output was made from)."""
        return dict(self.manifest.get("lineage", {}))

    @property
    def lineage(self) -> dict[str, str]:
        """The upstream lineage and this output's own hash under its stage name."""
        return {**self.upstream, self.stage: self.sha256}

    def file(self, rel: str) -> Path:
        """The path of a listed file; a file the manifest does not list is an error, never read."""
        if rel not in self.manifest["files"]:
            raise ArtifactError(f"{self.path}: {rel} is not listed in {MANIFEST}")
        return self.path / rel

    def has(self, rel: str) -> bool:
        return rel in self.manifest["files"]


def _hash_it(size: int, verify: str) -> bool:
    return verify == "hash" or (verify == "auto" and size <= AUTO_HASH_BYTES)


def open_dir(path: str | Path, verify: str | None = None) -> Artifact:
    """Open and verify a stage output directory (see the module docstring); `verify` defaults to the
    storage.verify setting: auto (sizes always, sha256 up to 256 MiB), hash (every file) or size."""
    from kabuflow.storage import settings

    path, verify = Path(path), verify or settings().verify
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such stage output directory")
    file = path / MANIFEST
    if not file.is_file():
        raise ArtifactError(
            f"{path}: no {MANIFEST} (the stage that writes it failed or was killed); re-run it"
        )
    data = file.read_bytes()
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError:
        raise ArtifactError(f"{file}: not valid JSON (an interrupted write?); re-run the stage") from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True or "files" not in manifest:
        raise ArtifactError(
            f"{file}: not a complete table of contents (an incomplete write or an older kabuflow); re-run the stage"
        )
    for rel, want in manifest["files"].items():
        f = path / rel
        if not f.is_file():
            raise ArtifactError(f"{path}: {rel} is listed in {MANIFEST} but missing")
        size = f.stat().st_size
        if size != want["size"]:
            raise ArtifactError(
                f"{path}: {rel} has {size} bytes, {MANIFEST} says {want['size']} (altered or partly written)"
            )
        if _hash_it(size, verify) and sha256_file(f) != want["sha256"]:
            raise ArtifactError(f"{path}: {rel} fails its sha256 in {MANIFEST} (altered or partly written)")
    extra = tuple(sorted(set(toc_names(path)) - set(manifest["files"])))
    if extra:
        log.warning(
            "%s: ignoring %d file(s) not listed in %s: %s", path, len(extra), MANIFEST, ", ".join(extra[:5])
        )
    return Artifact(path, manifest, hashlib.sha256(data).hexdigest(), extra)


def toc_names(root: Path) -> list[str]:
    """Relative paths of the files `toc` would list (no hashing)."""
    names = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return [n for n in names if n != MANIFEST and not TMP_NAME.match(Path(n).name)]


def merge_lineage(
    named: dict[str, dict[str, str]], own: dict[str, tuple[str, str]] | None = None
) -> dict[str, str]:
    """One lineage from several inputs' lineages; two inputs made from different outputs of the same
    stage (a graph from another panel, predictions over other folds) is an error naming both.

    `own` maps input name -> (stage, sha256) of the input itself: inputs of one stage may differ from
    each other (evaluate's fan-in of train-fold outputs) but not from what another input was made from.
    """
    own = own or {}
    fan_in = {st for st in {s for s, _ in own.values()} if len({h for s, h in own.values() if s == st}) > 1}
    merged: dict[str, tuple[str, str]] = {}
    items = [(n, st, h) for n, lin in named.items() for st, h in lin.items()]
    items += [(n, st, h) for n, (st, h) in own.items() if st not in fan_in]
    conflicts = []
    for name, stage, sha in items:
        if stage in merged and merged[stage][1] != sha:
            conflicts.append((name, stage, sha, *merged[stage]))
        merged.setdefault(stage, (name, sha))
    if conflicts:  # name the stage nearest the inputs (normalize rather than the ingest behind it)
        name, stage, sha, other, other_sha = max(
            conflicts, key=lambda c: DAG.index(c[1]) if c[1] in DAG else -1
        )
        raise ArtifactError(
            f"lineage mismatch: {name} and {other} come from different {stage} outputs "
            f"({sha[:12]} vs {other_sha[:12]}); rebuild them from the same run"
        )
    for name, (stage, _) in own.items():
        if stage in fan_in and stage in merged:
            raise ArtifactError(f"lineage mismatch: {name} is a {stage} output and an input of another input")
    return {stage: sha for stage, (_, sha) in merged.items()}


@dataclass
class Output:
    """A stage output being written: files go into `dir`, commit() writes the manifest and publishes."""

    cfg: Config
    final: Path
    stage: str
    dir: Path
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    upstream: dict[str, dict[str, str]] = field(default_factory=dict)
    committed: dict[str, Any] | None = None

    def read(self, name: str, path: str | Path) -> Artifact:
        """Open and verify input `name`, recording its identity for the manifest's inputs and lineage."""
        art = open_dir(path)
        self.use(name, art.lineage)
        return art

    def use(self, name: str, lineage: dict[str, str]) -> None:
        """Record an input opened elsewhere by its lineage (own identity last, as Artifact.lineage and
        file lineages give it); the lineages of all inputs so far are checked against each other now."""
        if not lineage:
            return  # hand-made data with no manifest (a bare folds list): nothing to record or check
        stage, sha = list(lineage.items())[-1]
        upstream = {**self.upstream, name: {k: v for k, v in lineage.items() if k != stage}}
        own = {n: (i["stage"], i["sha256"]) for n, i in self.inputs.items()} | {name: (stage, sha)}
        merge_lineage(upstream, own)  # raises before anything is recorded
        self.inputs[name] = {"stage": stage, "sha256": sha}
        self.upstream = upstream

    def identity(self) -> str:
        """sha256 over every input's identity and lineage: what this output is computed from (the
        training checkpoint's data fingerprint)."""
        text = json.dumps({"inputs": self.inputs, "lineage": self.lineage()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def lineage(self) -> dict[str, str]:
        """The merged lineage of every input recorded so far (raises on a mismatch)."""
        own = {n: (i["stage"], i["sha256"]) for n, i in self.inputs.items()}
        return merge_lineage(self.upstream, own)

    def commit(self, content: dict[str, Any]) -> dict[str, Any]:
        """Write manifest.json (content + stamp + inputs + lineage + table of contents), then publish."""
        manifest = {
            **content,
            **stamp(self.cfg, stage=self.stage),
            "inputs": self.inputs,
            "lineage": self.lineage(),
            "files": toc(self.dir),
            "complete": True,
        }
        write_json(self.dir / MANIFEST, manifest)
        publish_dir(self.dir, self.final)
        self.committed = manifest
        return manifest


@contextlib.contextmanager
def output(cfg: Config, out: str | Path, stage: str, keep: tuple[str, ...] = ()) -> Iterator[Output]:
    """Write a stage output into a sibling `.<name>.partial` directory and publish it on commit().

    Making the partial directory is the writability check, before any computing. A leftover of an
    earlier kill is removed first, but for files matching a `keep` pattern (train-fold resumes from its
    checkpoints there). On an exception the old output is untouched and the partial directory goes
    (with `keep`: all but the kept files).
    """
    from kabuflow.storage import configure

    configure(cfg.storage)
    final = Path(out).absolute()
    check_target(final)
    recover(final)
    work, _ = siblings(final)
    clear(work, keep)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArtifactError(f"{final}: cannot write the output location ({err.strerror})") from None
    w = Output(cfg, final, stage, work)
    try:
        yield w
    except BaseException:
        clear(work, keep)
        raise
    if w.committed is None:
        shutil.rmtree(work, ignore_errors=True)
        raise AssertionError(f"stage {stage} wrote {final} without commit()")


def seal(root: str | Path, stage: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the manifest of a directory filled outside a stage (the benchmark's copy of real tables,
    tests' hand-made inputs) in place, so it reads like a stage output."""
    root = Path(root)
    manifest = {**(content or {}), "stage": stage, "files": toc(root), "complete": True}
    write_json(root / MANIFEST, manifest)
    return manifest
