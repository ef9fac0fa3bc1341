"""`kabuflow run --runner docker`: every task in a container of the project image, on Docker or podman."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kabuflow.config import Config, ConfigError

IMAGE_UID = 1000  # docker/Dockerfile's user: the directories the tasks write must be theirs
PODMAN_SETUP = "sudo bash scripts/podman-setup.sh"


def candidate_sockets(environ: dict[str, str]) -> list[str]:
    """Where a Docker-compatible API listens: $DOCKER_HOST alone when set, else rootful Docker, rootful
    podman (scripts/podman-setup.sh), then the rootless sockets under $XDG_RUNTIME_DIR."""
    if environ.get("DOCKER_HOST"):
        return [environ["DOCKER_HOST"]]
    paths = ["/var/run/docker.sock", "/run/podman/podman.sock"]
    if runtime := environ.get("XDG_RUNTIME_DIR"):
        paths += [f"{runtime}/podman/podman.sock", f"{runtime}/docker.sock"]
    return [f"unix://{p}" for p in paths]


def find_engine(environ: dict[str, str] | None = None, timeout: float = 10.0) -> str:
    """The first endpoint that answers a ping; a ConfigError saying what is missing when none does."""
    try:
        import docker
    except ImportError as err:
        raise ConfigError(
            "--runner docker needs the `docker` Python package: pip install 'kabuflow[containers]'"
        ) from err
    environ = dict(os.environ if environ is None else environ)
    tried = []
    for url in candidate_sockets(environ):
        if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
            tried.append(f"{url} (no such socket)")
            continue
        try:
            client = docker.DockerClient(base_url=url, timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
            return url
        except docker.errors.DockerException as err:
            tried.append(f"{url} ({type(err).__name__}: {str(err)[:120]})")
    raise ConfigError(
        "no Docker-compatible engine answers: tried "
        + "; ".join(tried)
        + f". Start Docker, or podman's API service ({PODMAN_SETUP}), or set DOCKER_HOST"
    )


def resolve_image(url: str, image: str) -> str:
    """The image's name exactly as the engine tags it (podman prefixes localhost/), so that kfp finds it
    in the engine instead of trying to pull it; a ConfigError when the engine does not have it."""
    import docker

    client = docker.DockerClient(base_url=url)
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound as err:
        raise ConfigError(
            f"image {image!r} is not in the engine at {url}: build it (make image-cpu) or pass --image"
        ) from err
    finally:
        client.close()
    tags = found.tags
    if image in tags:
        return image
    suffix = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
    return next((t for t in tags if t.endswith("/" + suffix) or t == suffix), image)


def writable_by_image(paths: list[Path]) -> dict[str, Any]:
    """Make `paths` writable by the tasks' user; returns the run's `user` argument (empty: the image's).

    As root, the directories are handed to the image's uid 1000. As another user the tasks run as that
    user instead (still not root), so what they write stays the caller's."""
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
    if os.getuid() != 0:
        return {"user": f"{os.getuid()}:{os.getgid()}"}
    for p in paths:
        for d, dirs, files in os.walk(p):
            for name in [d, *(os.path.join(d, f) for f in dirs + files)]:
                os.chown(name, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    return {}


def docker_runner(cfg: Config, root: Path, image: str, env: dict[str, str], label: str) -> tuple[Any, str]:
    """kfp's DockerRunner for this run, and the image name to build the pipeline with.

    Every task runs with a read-only root filesystem and a private /tmp, so "writes nothing outside
    its mounts" is enforced, not hoped for. Mounted: the pipeline root (by kfp itself), the champion
    directory (it outlives the run) and, read-only, the --path of a files source."""
    from kfp import local

    import docker

    url = find_engine()
    os.environ["DOCKER_HOST"] = url  # kfp's task handler connects with docker.from_env()
    image = resolve_image(url, image)
    writable, mounts = [root], []
    if "://" not in cfg.evaluate.champion_uri:  # a local champion; an s3:// or gs:// one needs no mount
        champion = Path(cfg.evaluate.champion_uri)
        writable.append(champion)
        mounts.append(docker.types.Mount(str(champion), str(champion), type="bind"))
    user = writable_by_image(writable)
    if cfg.data.source == "files" and cfg.data.path:
        data = Path(cfg.data.path).resolve()
        mounts.append(docker.types.Mount(str(data), str(data), type="bind", read_only=True))
    runner = local.DockerRunner(
        environment=env,
        mounts=mounts,
        read_only=True,
        tmpfs={"/tmp": "rw,size=2g"},
        labels={"kabuflow.run": label},
        **user,
    )
    return runner, image
