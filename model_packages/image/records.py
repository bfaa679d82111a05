"""`kaizen-images.json`: the digest-pinned images the stacks deploy.

Format (version 1)::

    {"version": 1,
     "images": [{"model": "iris-classifier", "version": "1.0.0",
                 "reference": "127.0.0.1:5000/kaizen/iris-classifier@sha256:…",
                 "registry": "127.0.0.1:5000", "repository": "kaizen/iris-classifier",
                 "tag": "1.0.0", "digest": "sha256:…", "image_id": "sha256:…",
                 "artifact_sha256": "…", "built_at": "…Z", "pushed_at": "…Z"}]}

One entry per (registry, model, version); a later push of the same triple replaces it.
Stacks read it with :func:`find_image` and only ever use ``reference`` (never a tag).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from model_packages.errors import KaizenError

DEFAULT_PATH = Path("kaizen-images.json")
FORMAT_VERSION = 1


class RecordsError(KaizenError):
    """The image records file is unreadable or has no matching image."""


class NoImageRecorded(RecordsError):
    """The records file holds no image for the model (and version/registry) asked for."""


def records_path(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("KAIZEN_IMAGES_FILE", str(DEFAULT_PATH)))


def load_records(path: str | Path | None = None) -> dict[str, Any]:
    file = records_path(path)
    if not file.exists():
        return {"version": FORMAT_VERSION, "images": []}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise RecordsError(f"{file} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordsError(f"{file} has no `images` list")
    return data


def record_image(entry: dict[str, Any], path: str | Path | None = None) -> Path:
    """Add or replace the entry for (registry, model, version); atomic write."""
    if "@sha256:" not in str(entry.get("reference", "")):
        raise RecordsError("only digest-pinned references are recorded")
    file = records_path(path)
    data = load_records(file)
    key = (entry.get("registry"), entry.get("model"), entry.get("version"))
    images = [
        e for e in data["images"] if (e.get("registry"), e.get("model"), e.get("version")) != key
    ]
    images.append(entry)
    images.sort(key=lambda e: (str(e.get("model")), str(e.get("version")), str(e.get("registry"))))
    data = {"version": FORMAT_VERSION, "images": images}
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kaizen-images.", dir=file.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, file)
    return file


def find_image(
    model: str,
    version: str | None = None,
    registry: str | None = None,
    path: str | Path | None = None,
) -> dict[str, Any]:
    """The newest recorded entry for `model` (and `version`/`registry` when given)."""
    matches = [
        e
        for e in load_records(path)["images"]
        if e.get("model") == model
        and (version is None or e.get("version") == version)
        and (registry is None or e.get("registry") == registry)
    ]
    if not matches:
        raise NoImageRecorded(
            f"no pushed image for model {model}"
            + (f" version {version}" if version else "")
            + (f" in {registry}" if registry else "")
            + f" in {records_path(path)}"
        )
    return max(matches, key=lambda e: str(e.get("pushed_at", "")))
