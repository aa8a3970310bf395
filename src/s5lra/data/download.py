"""Fetch and extract the canonical archives: the LRA release, aclImdb (Text) and CIFAR-10 (Image).

Downloads resume from `<file>.part` (HTTP Range), are checked against the known MD5 where there is one, and
are extracted through a temporary folder. A short socket timeout makes a machine without network fail in
seconds, with a message saying what to fetch by hand and where to put it (a file already there is used).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from s5lra.errors import DataError

TIMEOUT_S = 10.0
BLOCK = 1 << 20


@dataclass(frozen=True)
class Archive:
    file: str
    url: str
    md5: str | None  # None: no published checksum
    folder: str  # what extracting it creates under the root


ARCHIVES = {
    "lra": Archive("lra_release.gz", "https://storage.googleapis.com/long-range-arena/lra_release.gz", None,
                   "lra_release"),
    "imdb": Archive("aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                    "7c2ac02c03563afcf9b574c7e56c153a", "aclImdb"),
    "cifar10": Archive("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
}


def download(name: str, root: str | os.PathLike, *, timeout: float = TIMEOUT_S) -> Path:
    """Make `<root>/<archive folder>` exist: download (or reuse) the archive, verify, extract. Returns it."""
    if name not in ARCHIVES:
        raise DataError(f"unknown archive {name!r}; known: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    root = Path(root).expanduser()
    target = root / archive.folder
    if target.exists():
        print(f"{target} already exists; nothing to do")
        return target
    root.mkdir(parents=True, exist_ok=True)
    path = root / archive.file
    if not path.exists():
        _fetch(archive, path, name, timeout)
    _verify(archive, path)
    _extract(path, root)
    return target


def _fetch(archive: Archive, path: Path, name: str, timeout: float) -> None:
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = Request(archive.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            total = response.length + have if response.length is not None else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=archive.file, disable=None
            ) as bar:
                while block := response.read(BLOCK):
                    f.write(block)
                    bar.update(len(block))
    except (URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"cannot download {archive.url} ({reason}); without network, fetch that file by hand, put it at "
            f"{path} and run `s5lra-data download {name} --root {path.parent}` again to verify and extract it"
            + (f" (a partial download is kept at {part} and resumed)" if part.exists() else "")
        ) from None
    os.replace(part, path)


def _verify(archive: Archive, path: Path) -> None:
    if archive.md5 is None:
        return
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    if digest.hexdigest() != archive.md5:
        raise DataError(f"{path}: MD5 {digest.hexdigest()} differs from the published {archive.md5}; "
                        f"delete the file and download it again")


def _extract(path: Path, root: Path) -> None:
    """Unpack into a temporary folder, then move its top-level entries into root."""
    tmp = root / f".extract-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tqdm(tar, desc=f"extracting {path.name}", unit="files", disable=None):
                tar.extract(member, tmp, filter="data")
        for entry in tmp.iterdir():
            os.replace(entry, root / entry.name)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: cannot extract ({e}); delete it and download it again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
