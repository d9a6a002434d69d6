"""Small shared helpers: atomic file writes, seeding, devices, the cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import random
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def modalrec_home() -> Path:
    """The cache folder: ``$MODALREC_HOME`` or ``~/.cache/modalrec``."""
    return Path(os.environ.get("MODALREC_HOME") or Path.home() / ".cache" / "modalrec")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    mode = 0o666 & ~current_umask()  # mkstemp makes 0600; a plain open() follows the umask
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # a writer may have replaced the file (safetensors does)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_dir(src: str | Path, dest: str | Path) -> None:
    """Put finished folder ``src`` at ``dest`` by renames; an existing ``dest`` is swapped out first."""
    src, dest = Path(src), Path(dest)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def file_lock(path: str | Path, *, wait: bool, what: str) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path`` (created if missing) for the block; the OS releases it when
    the process ends, so a crash never leaves a stale lock. With ``wait`` a second holder blocks (saying
    so once on stderr); without, it gets a :class:`LockedError` naming the holder's PID."""
    import fcntl
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(path)
            if not wait:
                raise LockedError(
                    f"{what} is in use by another process (PID {holder}); wait for it to finish or stop it"
                ) from None
            print(f"modalrec: waiting for process {holder}, which is writing {what}", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # no PID of a finished holder is left behind


class LockedError(RuntimeError):
    """Another process holds the lock of a run folder or store."""


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def hash_strings(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The full SHA-256 of a file's bytes, in hex (read ``chunk`` bytes at a time; ``hashlib.file_digest``
    is Python 3.11+)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits)."""
    return file_sha256(path, chunk)[:16]


def tar_member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The contents of a regular file in ``tar``; a ``tarfile.TarError`` for anything else (a link, a folder)."""
    f = tar.extractfile(member)
    if f is None:
        raise tarfile.TarError(f"{member.name} is not a regular file in the archive")
    return f.read()


def image_file_stem(item_id: str) -> str:
    """The file-name stem of ``item_id``'s image in an image folder: the id itself, or, if the id
    cannot be a file name (``/``, ``\\``, NUL, ``.``/``..``, over 200 bytes), ``_id-`` + 16 hex
    digits of its SHA-256 (the rendered posters use the same rule)."""
    if (
        "/" in item_id
        or "\\" in item_id
        or "\0" in item_id
        or item_id in ("", ".", "..")
        or len(item_id.encode("utf-8")) > 200
    ):
        return "_id-" + hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:16]
    return item_id


def bars_on(show: bool) -> bool:
    """Whether to draw progress bars: asked for, and stderr is a terminal (in a log file a bar is
    hundreds of carriage-return frames). ``MODALREC_PROGRESS=1`` forces them, ``0`` turns them off."""
    forced = os.environ.get("MODALREC_PROGRESS")
    if forced in ("0", "1"):
        return show and forced == "1"
    return show and sys.stderr.isatty()


def seed_everything(seed: int) -> None:
    """One seed drives Python, NumPy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' requested but CUDA is not available here; use device=cpu")
    return dev
