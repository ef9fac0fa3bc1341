"""Stage directories to and from object storage, with the manifest as table of contents."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from kabuflow import storage
from kabuflow.artifacts import sha256_file
from kabuflow.manifest import MANIFEST, ArtifactError, open_dir, publish_dir, recover

log = logging.getLogger("kabuflow.storage")


def upload_dir(local_dir: str | Path, uri: str | Path) -> list[str]:
    """Publish a complete local stage output (it must have its manifest) at `uri`.

    Object stores have no rename, so: the old manifest goes first (a reader then refuses the prefix
    instead of trusting replaced objects), the listed files next, the new manifest last, and only then
    are objects the new manifest does not list (stale tables of an earlier run) deleted. A kill at any
    point leaves the new complete output, or a prefix that every reader refuses with a clear error.
    A local or file:// `uri` is copied beside it and renamed into place.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no local directory {root} to upload to {uri}")
    listed = sorted(open_dir(root, "size").manifest["files"])
    if not storage.is_remote(uri):
        final = Path(storage.split(uri)[2]).absolute()
        recover(final)
        work = final.parent / f".{final.name}.partial"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(root, work)
        publish_dir(work, final)
        return [str(final / rel) for rel in [*listed, MANIFEST]]
    prefix = storage.join(uri, "")
    before = set(storage.list_uris(prefix))
    target = storage.join(uri, MANIFEST)
    if target in before:
        storage.delete(target)
    out = [storage.put_file(root / rel, storage.join(uri, rel)) for rel in listed]
    out.append(storage.put_file(root / MANIFEST, target))
    for stale in sorted(before - set(out)):
        log.info("upload %s: deleting %s (not in the new manifest)", uri, stale)
        storage.delete(stale)
    return out


def download_dir(uri: str | Path, local_dir: str | Path) -> list[Path]:
    """Download the files `uri`/manifest.json lists into `local_dir`, each checked against its size and
    sha256 (hashing is cheap next to the transfer), the manifest last; unlisted objects are reported
    and never downloaded."""
    prefix, local = storage.join(uri, ""), Path(local_dir)
    try:
        data = storage.read_bytes(storage.join(uri, MANIFEST))
    except FileNotFoundError:
        raise ArtifactError(
            f"{uri}: no {MANIFEST} (the stage that writes it failed or was killed mid-upload); re-run it"
        ) from None
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError:
        raise ArtifactError(
            f"{storage.join(uri, MANIFEST)}: not valid JSON (an interrupted write?)"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True or "files" not in manifest:
        raise ArtifactError(
            f"{storage.join(uri, MANIFEST)}: not a complete table of contents; re-run the stage"
        )
    extra = sorted(
        set(storage.list_uris(prefix)) - {storage.join(uri, r) for r in [*manifest["files"], MANIFEST]}
    )
    if extra:
        log.warning(
            "%s: ignoring %d object(s) not listed in %s: %s", uri, len(extra), MANIFEST, ", ".join(extra[:5])
        )
    got = []
    for rel, want in manifest["files"].items():
        path = storage.get_file(storage.join(uri, rel), local / rel)
        if path.stat().st_size != want["size"] or sha256_file(path) != want["sha256"]:
            raise ArtifactError(
                f"{uri}: {rel} does not match {MANIFEST} (size or sha256; replaced or partly written)"
            )
        got.append(path)
    (local / MANIFEST).write_bytes(data)
    return [*got, local / MANIFEST]
