"""What goes into a model image, hashed: the same hash means the same image.

The local stack (`infra/local/images.py`) skips a build when it is unchanged, and the retraining
run records it, so a replay can tell the image it would build is the recorded one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import model_packages


def _image_inputs() -> list[tuple[Path, Path]]:
    """(root, file) of the Kaizen sources that go into a model image: the serving runtime files the
    build context copies, and the image recipe (locks, Dockerfile template, build code)."""
    src = Path(model_packages.__file__).parent
    from model_packages.image.context import runtime_files

    runtime = list(runtime_files(src))
    recipe = [p for p in (src / "image").rglob("*") if p.is_file()]
    return [(src, p) for p in sorted(set(runtime) | set(recipe))]


def package_hash(package_dir: str | Path) -> str:
    """Hash of everything that goes into the model image: the package, the runtime code and the
    image recipe."""
    h = hashlib.sha256()
    pkg = Path(package_dir)
    files = [(pkg, p) for p in sorted(pkg.rglob("*")) if p.is_file()] + _image_inputs()
    for root, path in files:
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".whl"):
            continue
        h.update(str(rel).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
