"""Fetch files and folders (checkpoints, tokenizer models) from URLs into a local cache.

`maybe_download("gs://openpi-assets/checkpoints/pi05_droid")` returns a local path: local paths are returned
as they are, URLs (`gs://`, `s3://`, `https://`, `file://`, any fsspec protocol) are copied once into
`$OPENPI_DATA_HOME` (default `~/.cache/openpi`) under `<protocol>/<bucket>/<path>`. A download goes to a temporary
sibling first and is renamed into place when complete, so an interrupted one never leaves a half-written cache entry.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import socket
import urllib.parse
import uuid
from typing import Any

from openpi_core.errors import OpenpiError

logger = logging.getLogger(__name__)

_DEFAULT_CACHE = "~/.cache/openpi"
# Hosts behind the remote protocols, checked (one TCP connect, a few seconds) before a download starts, so that
# an offline machine gets one clear line instead of a client library's retries and traceback.
_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com", "s3": "s3.amazonaws.com"}
REACH_TIMEOUT_S = 3.0


class DownloadError(OpenpiError, ConnectionError):
    """A remote file or folder could not be fetched (the message names the URL and why)."""


def cache_dir() -> pathlib.Path:
    """The download cache (`$OPENPI_DATA_HOME`, default `~/.cache/openpi`); created on first use."""
    path = pathlib.Path(os.environ.get("OPENPI_DATA_HOME", _DEFAULT_CACHE)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_url(path: str | os.PathLike[str]) -> bool:
    return "://" in str(path)


def local_cache_path(url: str) -> pathlib.Path:
    """Where `url` is (or will be) cached."""
    protocol, _, rest = url.partition("://")
    parts = [part for part in rest.split("/") if part not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"URL {url!r} names no file or folder")
    return cache_dir().joinpath(protocol, *parts)


def maybe_download(url: str | os.PathLike[str], *, force_download: bool = False, **fs_kwargs: Any) -> pathlib.Path:
    """A local path for `url`, downloading (with a progress bar) if it is remote and not cached yet.

    `fs_kwargs` go to the fsspec filesystem (e.g. `token="anon"` for public `gs://` buckets, which is the default
    for gs). Raises FileNotFoundError naming the path when a local path or remote object does not exist.
    """
    if not is_url(url):
        path = pathlib.Path(url).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        return path
    url = str(url).rstrip("/")
    local = local_cache_path(url)
    if local.exists() and not force_download:
        return local

    import fsspec  # noqa: PLC0415 (only needed for remote paths)

    protocol = url.partition("://")[0]
    check_reachable(url)
    if protocol in ("gs", "gcs"):
        fs_kwargs.setdefault("token", "anon")
    fs, remote = fsspec.core.url_to_fs(url, **fs_kwargs)
    if not fs.exists(remote):
        raise FileNotFoundError(f"no such file or folder: {url}")
    files = [remote] if not fs.isdir(remote) else sorted(fs.find(remote))
    sizes = {name: int(fs.info(name).get("size") or 0) for name in files}
    logger.info("Downloading %s (%d files, %.1f MB) to %s", url, len(files), sum(sizes.values()) / 1e6, local)

    local.parent.mkdir(parents=True, exist_ok=True)
    scratch = local.parent / f".{local.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        _copy_with_progress(fs, remote, files, sizes, scratch, is_dir=fs.isdir(remote))
        if local.exists():  # force_download: replace the old copy only once the new one is complete
            shutil.rmtree(local) if local.is_dir() else local.unlink()
        scratch.rename(local)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch) if scratch.is_dir() else scratch.unlink()
    return local


def check_reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise `DownloadError` within `timeout` s if the host serving `url` cannot be reached (no-op for local
    protocols)."""
    protocol = url.partition("://")[0]
    host = _HOSTS.get(protocol)
    port = 443
    if protocol in ("http", "https"):
        parsed = urllib.parse.urlparse(url)
        host, port = parsed.hostname, parsed.port or (443 if protocol == "https" else 80)
    if host is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise DownloadError(f"cannot download {url}: {host} is unreachable ({exc.strerror or exc})") from None


def _copy_with_progress(
    fs: Any, remote: str, files: list[str], sizes: dict[str, int], target: pathlib.Path, *, is_dir: bool
) -> None:
    from tqdm import tqdm  # noqa: PLC0415

    root = remote.rstrip("/")
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc=target.name.split(".partial-")[0][1:]) as bar:
        for name in files:
            destination = target / os.path.relpath(name, root) if is_dir else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            with fs.open(name, "rb") as source, destination.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)
                    bar.update(len(chunk))
