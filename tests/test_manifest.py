"""kabuflow.manifest: the table of contents, what readers refuse, atomic publish, lineage where artifacts meet."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from kabuflow import manifest
from kabuflow.config import Config
from kabuflow.manifest import ArtifactError, open_dir, output, seal


def _stage(root, files: dict[str, bytes], stage="ingest"):
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return seal(root, stage)


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    m = _stage(tmp_path / "a", {"t.parquet": b"abc", "sub/x.npy": b"12345"})
    assert m["files"] == {
        "sub/x.npy": {"size": 5, "sha256": hashlib.sha256(b"12345").hexdigest()},
        "t.parquet": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
    }
    art = open_dir(tmp_path / "a")
    assert art.sha256 == hashlib.sha256((tmp_path / "a" / "manifest.json").read_bytes()).hexdigest()
    assert art.lineage == {"ingest": art.sha256} and art.extra == ()


def test_readers_refuse_what_they_cannot_trust(tmp_path):
    root = tmp_path / "a"
    _stage(root, {"t.parquet": b"abc", "u.parquet": b"defg"})
    (root / "u.parquet").write_bytes(b"defh")  # same size, other bytes
    with pytest.raises(ArtifactError, match=r"/a: u.parquet fails its sha256 in manifest.json"):
        open_dir(root)
    assert open_dir(root, "size").manifest["files"]["u.parquet"]["size"] == 4  # size-only policy
    (root / "u.parquet").write_bytes(b"de")
    with pytest.raises(ArtifactError, match=r"/a: u.parquet has 2 bytes, manifest.json says 4"):
        open_dir(root, "size")
    (root / "u.parquet").unlink()
    with pytest.raises(ArtifactError, match=r"/a: u.parquet is listed in manifest.json but missing"):
        open_dir(root)
    (root / "manifest.json").write_text('{"files": {}, "compl')  # torn write
    with pytest.raises(ArtifactError, match="not valid JSON"):
        open_dir(root)
    (root / "manifest.json").write_text(json.dumps({"stage": "ingest", "tables": {}}))  # older format
    with pytest.raises(ArtifactError, match="not a complete table of contents"):
        open_dir(root)
    (root / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"/a: no manifest.json"):
        open_dir(root)


def test_stale_files_are_reported_and_never_read(tmp_path, caplog):
    root = tmp_path / "a"
    _stage(root, {"equities_bars_daily.parquet": b"new"})
    (root / "indices_bars_daily_topix.parquet").write_bytes(b"an earlier run's table")
    art = open_dir(root)
    assert art.extra == ("indices_bars_daily_topix.parquet",)
    assert "ignoring 1 file(s) not listed" in caplog.text
    assert not art.has("indices_bars_daily_topix.parquet")
    with pytest.raises(ArtifactError, match="indices_bars_daily_topix.parquet is not listed"):
        art.file("indices_bars_daily_topix.parquet")


def test_output_publishes_by_swap_and_an_exception_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    with output(Config(), out, "ingest") as w:
        assert w.dir == manifest.partial_dir(out) and not out.exists()  # nothing visible yet
        (w.dir / "a.txt").write_text("one")
        first = w.commit({"n": 1})
    assert open_dir(out).manifest == first and first["complete"] and first["n"] == 1
    with pytest.raises(RuntimeError, match="source died"), output(Config(), out, "ingest") as w:
        (w.dir / "b.txt").write_text("half")
        raise RuntimeError("source died")
    assert open_dir(out).manifest == first and not (out / "b.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the partial directory is gone
    with output(Config(), out, "ingest") as w:
        (w.dir / "b.txt").write_text("two")
        second = w.commit({"n": 2})
    assert sorted(os.listdir(out)) == ["b.txt", "manifest.json"] and open_dir(out).manifest == second


def test_a_kill_between_the_fallback_renames_is_mended(tmp_path):
    """Where the filesystem cannot swap atomically, publish renames out aside first: a kill right then
    leaves .out.old (complete) and no out; the next writer (or recover) puts the old one back."""
    out = tmp_path / "out"
    _stage(out, {"a.txt": b"old"})
    os.rename(out, tmp_path / ".out.old")
    manifest.recover(out)
    assert open_dir(out).manifest["files"]["a.txt"]["size"] == 3
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_output_refuses_a_directory_that_is_not_a_stage_output(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    with (
        pytest.raises(ArtifactError, match="holds files but no manifest.json"),
        output(Config(), tmp_path / "home", "ingest"),
    ):
        pass
    assert (tmp_path / "home" / "thesis.tex").read_text() == "years of work"


def test_lineage_mismatch_names_both_inputs(tmp_path):
    panel_a = _stage(tmp_path / "panel_a", {"X.npy": b"a"}, "normalize")
    _stage(tmp_path / "panel_b", {"X.npy": b"b"}, "normalize")
    with output(Config(), tmp_path / "graph", "graph") as w:
        w.read("panel", tmp_path / "panel_a")
        (w.dir / "offsets.npy").write_bytes(b"0")
        graph = w.commit({})
    sha_a = hashlib.sha256((tmp_path / "panel_a" / "manifest.json").read_bytes()).hexdigest()
    assert graph["lineage"] == {"normalize": sha_a} and panel_a["stage"] == "normalize"
    with pytest.raises(
        ArtifactError,
        match=r"lineage mismatch: (panel and graph|graph and panel) come from different normalize outputs",
    ):
        with output(Config(), tmp_path / "train", "train-fold") as w:
            w.read("panel", tmp_path / "panel_b")
            w.read("graph", tmp_path / "graph")
    # Fan-in: several outputs of one stage may differ from each other, not from their own inputs' lineage.
    for k in (0, 1):
        with output(Config(), tmp_path / f"fold{k}", "train-fold") as w:
            w.read("panel", tmp_path / "panel_a")
            (w.dir / "predictions.parquet").write_bytes(bytes([k]))
            w.commit({})
    with output(Config(), tmp_path / "evaluate", "evaluate") as w:
        w.read("p0", tmp_path / "fold0")
        w.read("p1", tmp_path / "fold1")
        assert w.lineage() == {"normalize": sha_a}
        with pytest.raises(
            ArtifactError, match="lineage mismatch: panel_b and p0 come from different normalize"
        ):
            w.read("panel_b", tmp_path / "panel_b")
        w.commit({})
